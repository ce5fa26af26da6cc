//! Content-defined blocks: a long stage is cut where a rule's hash says, so that a one-rule
//! change rewrites about one block (K7).

use crate::ruleset::RuleSpec;
use std::hash::{Hash, Hasher};

/// Stages with more rules than this are cut into blocks (see `Renderer::stage_chain`).
pub(super) const UNCUT_STAGE_MAX: usize = 64;
/// Blocks are about this long: a one-rule change rewrites about this many rules.
pub(super) const BLOCK_AVERAGE: usize = 16;

/// Cuts `rules` into blocks at content-defined points.
pub(super) fn content_defined_blocks(rules: Vec<RuleSpec>) -> Vec<Vec<RuleSpec>> {
    let hashes: Vec<u64> = rules.iter().map(rule_hash).collect();
    let mut rules = rules.into_iter();
    let mut start = 0;
    block_ends(&hashes)
        .into_iter()
        .map(|end| {
            let block = rules.by_ref().take(end - start).collect();
            start = end;
            block
        })
        .collect()
}

/// Where blocks end: after a rule whose hash has its bits under [`BLOCK_AVERAGE`] clear, once
/// the block has a quarter of the average; at four times the average at the latest (rarely:
/// such forced cuts are not content-defined, so a run of them moves with an insertion).
pub(super) fn block_ends(hashes: &[u64]) -> Vec<usize> {
    let mask = BLOCK_AVERAGE as u64 - 1;
    let mut ends = Vec::new();
    let mut start = 0;
    for (i, hash) in hashes.iter().enumerate() {
        let length = i + 1 - start;
        // The high half of the hash: FxHash mixes its low bits poorly.
        let cut = (hash >> 32) & mask == 0;
        if (cut && length >= BLOCK_AVERAGE / 4) || length >= BLOCK_AVERAGE * 4 {
            ends.push(i + 1);
            start = i + 1;
        }
    }
    if start < hashes.len() {
        ends.push(hashes.len());
    }
    ends
}

/// A stable hash of a rule's content.
pub(super) fn rule_hash(rule: &RuleSpec) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    serde_json::to_string(&rule.statements)
        .expect("statements serialise")
        .hash(&mut hasher);
    rule.comment.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::statements::{port_match, rule};
    use nftables::stmt::Statement;
    use proptest::prelude::*;

    fn numbered_rule(n: u32) -> RuleSpec {
        rule(
            vec![port_match("tcp", "dport", &[(n as u16, n as u16)])],
            Statement::Drop(None),
            format!("rule {n}"),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Blocks keep every rule in order, and an inserted rule changes only the blocks
        /// around it.
        #[test]
        fn blocks_are_complete_and_local(count in 65usize..3000, at in any::<prop::sample::Index>()) {
            let rules: Vec<RuleSpec> = (0..count as u32).map(numbered_rule).collect();
            let blocks = content_defined_blocks(rules.clone());
            prop_assert_eq!(blocks.concat(), rules.clone());
            prop_assert!(blocks.iter().all(|b| b.len() <= BLOCK_AVERAGE * 4));

            let mut inserted = rules.clone();
            inserted.insert(at.index(count), numbered_rule(1_000_000));
            let after = content_defined_blocks(inserted);
            let changed = after.iter().filter(|b| !blocks.contains(b)).count();
            prop_assert!(changed <= 4, "{} of {} blocks changed", changed, after.len());
        }
    }
}

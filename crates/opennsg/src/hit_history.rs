//! When each NSG rule last decided a packet, from periodic readings of the kernel's counters:
//! what "which rules had no hit in the last N hours" needs (the input of unused-rule insights).
//!
//! The kernel counts per rule but keeps no time, and a chain rewritten by an apply starts its
//! counters again from zero. [`HitHistory::observe`] compares each reading with the previous
//! one: growth since is a hit now; a counter lower than before was reset, and its whole value
//! is new. Totals are summed across resets. Time is passed in (epoch seconds).

use anyhow::{Context, Result};
use nsg_nft::hits::{Hits, RuleComment};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One rule's history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleHistory {
    pub network_security_group: String,
    pub rule: String,
    pub priority: u32,
    pub access: String,
    /// Packets and bytes counted while observed, across counter resets.
    pub packets: u64,
    pub bytes: u64,
    /// When a reading last showed new packets (epoch seconds).
    pub last_hit: Option<u64>,
    /// The kernel's counter at the last reading.
    #[serde(default)]
    counter: (u64, u64),
}

/// Every rule's history since `since`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HitHistory {
    /// The first reading (epoch seconds); nothing is known of earlier times.
    pub since: Option<u64>,
    pub rules: Vec<RuleHistory>,
}

impl HitHistory {
    /// Takes a reading of the kernel's counters at `now`.
    pub fn observe(&mut self, now: u64, hits: &BTreeMap<RuleComment, Hits>) {
        self.since.get_or_insert(now);
        let mut index: HashMap<(String, String), usize> = self
            .rules
            .iter()
            .enumerate()
            .map(|(at, r)| ((r.network_security_group.clone(), r.rule.clone()), at))
            .collect();
        for (comment, hits) in hits {
            let key = (comment.nsg.clone(), comment.rule.clone());
            let at = *index.entry(key).or_insert_with(|| {
                self.rules.push(RuleHistory {
                    network_security_group: comment.nsg.clone(),
                    rule: comment.rule.clone(),
                    ..RuleHistory::default()
                });
                self.rules.len() - 1
            });
            let history = &mut self.rules[at];
            history.priority = comment.priority;
            history.access = comment.access.clone();
            let (packets, bytes) = if hits.packets >= history.counter.0 {
                (
                    hits.packets - history.counter.0,
                    hits.bytes.saturating_sub(history.counter.1),
                )
            } else {
                // The chain was rewritten: its counters started again.
                (hits.packets, hits.bytes)
            };
            if packets > 0 {
                history.packets += packets;
                history.bytes += bytes;
                history.last_hit = Some(now);
            }
            history.counter = (hits.packets, hits.bytes);
        }
    }

    /// The rules with no hit in the `window` seconds before `now`, or `Err` with the seconds
    /// observed when the history does not reach back that far.
    pub fn unused(&self, now: u64, window: u64) -> Result<Vec<&RuleHistory>, u64> {
        let observed = self.since.map_or(0, |since| now.saturating_sub(since));
        if observed < window {
            return Err(observed);
        }
        let cutoff = now.saturating_sub(window);
        Ok(self
            .rules
            .iter()
            .filter(|r| r.last_hit.is_none_or(|hit| hit < cutoff))
            .collect())
    }

    /// The history in `path`, or an empty one when the file does not exist.
    pub fn load(path: &Path) -> Result<HitHistory> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a hit history", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(HitHistory::default()),
            Err(error) => Err(error).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Writes the history to `path` atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("write {}", path.display()))?;
        serde_json::to_writer_pretty(&mut file, self)?;
        file.persist(path)
            .with_context(|| format!("write {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(rows: &[(&str, u64, u64)]) -> BTreeMap<RuleComment, Hits> {
        rows.iter()
            .map(|&(rule, packets, bytes)| {
                (
                    RuleComment {
                        nsg: "nsg1".into(),
                        rule: format!("securityRules/{rule}"),
                        priority: 100,
                        access: "Allow".into(),
                    },
                    Hits { packets, bytes },
                )
            })
            .collect()
    }

    fn last_hits(history: &HitHistory) -> Vec<(String, u64, Option<u64>)> {
        history
            .rules
            .iter()
            .map(|r| (r.rule.clone(), r.packets, r.last_hit))
            .collect()
    }

    #[test]
    fn growth_is_a_hit_and_resets_count_again() {
        let mut history = HitHistory::default();
        // Counters already at 5 when observation starts: a hit at the first reading.
        history.observe(1000, &reading(&[("a", 5, 500), ("b", 0, 0)]));
        history.observe(1060, &reading(&[("a", 5, 500), ("b", 2, 120)]));
        // "a" was rewritten by an apply and counted 1 since.
        history.observe(1120, &reading(&[("a", 1, 60), ("b", 2, 120)]));
        assert_eq!(
            last_hits(&history),
            vec![
                ("securityRules/a".into(), 6, Some(1120)),
                ("securityRules/b".into(), 2, Some(1060)),
            ]
        );
        assert_eq!(history.since, Some(1000));
    }

    #[test]
    fn unused_rules_are_those_without_a_hit_in_the_window() {
        let mut history = HitHistory::default();
        history.observe(0, &reading(&[("a", 0, 0), ("b", 0, 0), ("c", 0, 0)]));
        history.observe(3000, &reading(&[("a", 1, 60), ("b", 0, 0), ("c", 0, 0)]));
        history.observe(7200, &reading(&[("a", 1, 60), ("b", 0, 0), ("c", 3, 180)]));
        let names = |rules: Vec<&RuleHistory>| {
            rules
                .into_iter()
                .map(|r| r.rule.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            history.unused(7200, 3600).map(names),
            Ok(vec!["securityRules/a".into(), "securityRules/b".into()])
        );
        assert_eq!(
            history.unused(7200, 7200).map(names),
            Ok(vec!["securityRules/b".into()])
        );
        // Two hours observed cannot tell of three.
        assert_eq!(history.unused(7200, 3 * 3600).map(names), Err(7200));
    }

    #[test]
    fn the_history_survives_a_save_and_load() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("hits.json");
        assert_eq!(
            HitHistory::load(&path).expect("no file yet"),
            HitHistory::default()
        );
        let mut history = HitHistory::default();
        history.observe(10, &reading(&[("a", 4, 240)]));
        history.save(&path).expect("save");
        assert_eq!(HitHistory::load(&path).expect("load"), history);
        std::fs::write(&path, "not json").expect("write");
        assert!(HitHistory::load(&path).is_err());
    }
}

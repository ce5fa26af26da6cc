//! Transactions that take the kernel from one [`Ruleset`] to another.
//!
//! Every plan is one `nft -j -f -` batch, which the kernel commits atomically: readers see the old
//! table or the new one, never a mix (invariant 4). A full plan replaces the whole table; an
//! incremental plan touches only what differs. Sets are named by their content, so a changed set
//! is a new set, and a rule change rewrites one chain.

use crate::ruleset::{
    chain, chain_object, rule_object, set_object, table_object, AddressSet, Ruleset, Table,
};
use nftables::schema::{FlushObject, NfCmd, NfListObject, NfObject, Nftables};
use std::borrow::Cow;
use std::collections::BTreeSet;

/// What differs between two rulesets, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Difference {
    pub sets_added: Vec<String>,
    pub sets_removed: Vec<String>,
    /// Sets of the same name whose elements differ (only by hand edits: our names are content).
    pub sets_changed: Vec<String>,
    pub chains_added: Vec<String>,
    pub chains_removed: Vec<String>,
    pub chains_changed: Vec<String>,
}

impl Difference {
    pub fn between(current: &Ruleset, desired: &Ruleset) -> Difference {
        let mut difference = Difference::default();
        for (name, set) in &desired.sets {
            match current.sets.get(name) {
                None => difference.sets_added.push(name.clone()),
                Some(old) if old != set => difference.sets_changed.push(name.clone()),
                Some(_) => {}
            }
        }
        difference.sets_removed = removed(current.sets.keys(), &desired.sets);
        for (name, chain) in &desired.chains {
            match current.chains.get(name) {
                None => difference.chains_added.push(name.clone()),
                Some(old) if old != chain => difference.chains_changed.push(name.clone()),
                Some(_) => {}
            }
        }
        difference.chains_removed = removed(current.chains.keys(), &desired.chains);
        difference
    }

    pub fn is_empty(&self) -> bool {
        self == &Difference::default()
    }

    /// Chains whose rules this change rewrites: added, changed or removed.
    pub fn touched_chains(&self) -> impl Iterator<Item = &String> {
        self.chains_added
            .iter()
            .chain(&self.chains_changed)
            .chain(&self.chains_removed)
    }

    /// One line per difference, for drift reports.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut each = |what: &str, names: &[String]| {
            lines.extend(names.iter().map(|n| format!("{what} {n}")));
        };
        each("missing set", &self.sets_added);
        each("unexpected set", &self.sets_removed);
        each("altered set", &self.sets_changed);
        each("missing chain", &self.chains_added);
        each("unexpected chain", &self.chains_removed);
        each("altered chain", &self.chains_changed);
        lines
    }
}

fn removed<'a, V>(
    current: impl Iterator<Item = &'a String>,
    desired: &std::collections::BTreeMap<String, V>,
) -> Vec<String> {
    current
        .filter(|name| !desired.contains_key(*name))
        .cloned()
        .collect()
}

/// Replaces the whole of OpenNSG's tables in one transaction. `add` before `delete` makes the
/// delete valid whether or not the table exists. The `bridge` table is replaced when `desired`
/// has chains for it, and deleted when it does not but `bridge_table_exists`; otherwise it is
/// left alone, so hosts without bridge ports never load the bridge family.
pub fn full(desired: &Ruleset, bridge_table_exists: bool) -> Nftables<'static> {
    let mut commands = Vec::new();
    for table in Table::ALL {
        let wanted = table == Table::Inet || desired.has_bridge_chains();
        if wanted || bridge_table_exists {
            commands.push(NfCmd::Add(table_object(table)));
            commands.push(NfCmd::Delete(table_object(table)));
        }
        if wanted {
            commands.push(NfCmd::Add(table_object(table)));
        }
    }
    commands.extend(
        desired
            .sets
            .iter()
            .map(|(name, set)| NfCmd::Add(set_object(name, set))),
    );
    commands.extend(
        desired
            .chains
            .iter()
            .map(|(name, chain)| NfCmd::Add(chain_object(name, chain))),
    );
    for (name, chain) in &desired.chains {
        commands.extend(
            chain
                .rules
                .iter()
                .map(|r| NfCmd::Add(rule_object(name, chain, r))),
        );
    }
    batch(commands)
}

/// The smallest transaction from `current` to `desired`, or `None` when they are equal. Falls back
/// to [`full`] when a base chain's hook changed or a set was altered in place, which only a hand
/// edit does.
pub fn incremental(current: &Ruleset, desired: &Ruleset) -> Option<Nftables<'static>> {
    let difference = Difference::between(current, desired);
    if difference.is_empty() {
        return None;
    }
    let hook_changed = difference.chains_changed.iter().any(|name| {
        let (old, new) = (&current.chains[name], &desired.chains[name]);
        old.hook != new.hook || old.table != new.table
    });
    if hook_changed || !difference.sets_changed.is_empty() {
        return Some(full(desired, current.has_bridge_chains()));
    }
    let mut commands = vec![NfCmd::Add(table_object(Table::Inet))];
    if desired.has_bridge_chains() {
        commands.push(NfCmd::Add(table_object(Table::Bridge)));
    }
    // New sets and chains exist before any rule refers to them.
    for name in &difference.sets_added {
        commands.push(NfCmd::Add(set_object(name, &desired.sets[name])));
    }
    for name in &difference.chains_added {
        commands.push(NfCmd::Add(chain_object(name, &desired.chains[name])));
    }
    // Changed and removed chains are emptied first, which drops their jumps and set references.
    let emptied: BTreeSet<&String> = difference
        .chains_changed
        .iter()
        .chain(&difference.chains_removed)
        .collect();
    for name in emptied {
        let object = chain(name, &current.chains[name]);
        commands.push(NfCmd::Flush(FlushObject::Chain(object)));
    }
    for name in difference
        .chains_added
        .iter()
        .chain(&difference.chains_changed)
    {
        let spec = &desired.chains[name];
        commands.extend(
            spec.rules
                .iter()
                .map(|r| NfCmd::Add(rule_object(name, spec, r))),
        );
    }
    for name in &difference.chains_removed {
        commands.push(NfCmd::Delete(chain_object(name, &current.chains[name])));
    }
    // The last bridge port unbound: the bridge table goes, its chains with it.
    if current.has_bridge_chains() && !desired.has_bridge_chains() {
        commands.push(NfCmd::Delete(table_object(Table::Bridge)));
    }
    for name in &difference.sets_removed {
        let identity = AddressSet {
            family: current.sets[name].family,
            ranges: Vec::new(),
        };
        commands.push(NfCmd::Delete(set_object(name, &identity)));
    }
    Some(batch(commands))
}

/// Whether `batch` replaces the whole `inet` table rather than changing parts of it.
pub fn replaces_table(batch: &Nftables<'_>) -> bool {
    batch.objects.iter().any(|object| {
        matches!(
            object,
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(table)))
                if table.family == Table::Inet.family()
        )
    })
}

/// Removes OpenNSG's tables, for `enforce --remove`: those of `tables` (the ones that exist).
pub fn remove(tables: &[Table]) -> Nftables<'static> {
    batch(
        tables
            .iter()
            .flat_map(|&t| [NfCmd::Add(table_object(t)), NfCmd::Delete(table_object(t))])
            .collect(),
    )
}

fn batch(commands: Vec<NfCmd<'static>>) -> Nftables<'static> {
    Nftables {
        objects: Cow::Owned(commands.into_iter().map(NfObject::CmdObject).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::ChainSpec;
    use nftables::types::NfHook;

    /// A ruleset with one inet base chain, and a bridge base chain if `bridged`.
    fn ruleset(bridged: bool) -> Ruleset {
        let mut ruleset = Ruleset::default();
        let base = |table, hook| ChainSpec {
            table,
            hook: Some((hook, -200)),
            rules: Vec::new(),
        };
        ruleset
            .chains
            .insert("forward".into(), base(Table::Inet, NfHook::Forward));
        if bridged {
            ruleset.chains.insert(
                "l2-prerouting".into(),
                base(Table::Bridge, NfHook::Prerouting),
            );
        }
        ruleset
    }

    /// The (command, family) of every table command in `batch`.
    fn table_commands(batch: &Nftables<'_>) -> Vec<(&'static str, String)> {
        batch
            .objects
            .iter()
            .filter_map(|object| {
                let (command, object) = match object {
                    NfObject::CmdObject(NfCmd::Add(o)) => ("add", o),
                    NfObject::CmdObject(NfCmd::Delete(o)) => ("delete", o),
                    _ => return None,
                };
                let NfListObject::Table(table) = object else {
                    return None;
                };
                let family = serde_json::to_value(table.family).expect("a family");
                Some((command, family.as_str().unwrap_or_default().to_string()))
            })
            .collect()
    }

    fn commands(list: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        list.iter().map(|(c, f)| (*c, f.to_string())).collect()
    }

    #[test]
    fn the_bridge_table_is_made_only_for_bridge_ports_and_deleted_with_the_last() {
        // Routed only: the bridge family is never touched, unless a bridge table is left over.
        assert_eq!(
            table_commands(&full(&ruleset(false), false)),
            commands(&[("add", "inet"), ("delete", "inet"), ("add", "inet")])
        );
        assert_eq!(
            table_commands(&full(&ruleset(false), true)),
            commands(&[
                ("add", "inet"),
                ("delete", "inet"),
                ("add", "inet"),
                ("add", "bridge"),
                ("delete", "bridge"),
            ])
        );
        assert_eq!(
            table_commands(&full(&ruleset(true), false)),
            commands(&[
                ("add", "inet"),
                ("delete", "inet"),
                ("add", "inet"),
                ("add", "bridge"),
                ("delete", "bridge"),
                ("add", "bridge"),
            ])
        );
        // The first bridge port: the table is made in place; the last one unbound: deleted,
        // and neither replaces the inet table.
        let bound = incremental(&ruleset(false), &ruleset(true)).expect("a change");
        assert_eq!(
            table_commands(&bound),
            commands(&[("add", "inet"), ("add", "bridge")])
        );
        assert!(!replaces_table(&bound));
        let unbound = incremental(&ruleset(true), &ruleset(false)).expect("a change");
        assert_eq!(
            table_commands(&unbound),
            commands(&[("add", "inet"), ("delete", "bridge")])
        );
        assert!(!replaces_table(&unbound));
    }
}

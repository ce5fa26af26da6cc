//! The engine: a NIC's flow space (one direction) cut into regions inside which every flow
//! meets the same rules first.
//!
//! One classifier is built over the rules of every policy analysed together (a diff's old and
//! new policy side by side) and a few *refiners*, boxes of flows whose inside and outside must
//! not share a region (the platform exceptions, the SMTP block, a lint's "from the Internet to a
//! management port"). Its elementary intervals, grouped by class (the set of rules matching
//! there), are the *atoms* of each field. A depth-first walk goes field by field: at each branch,
//! the field's atoms are split by the rules still matching the branch, one rule at a time (each
//! rule's atoms are a bitmap, so a split is a few word operations however many atoms a tag
//! makes); atoms that end up with the same rules are one branch. A region is thus a product of
//! one union of atoms per field, and the walk visits each distinct combination once.
//!
//! What keeps the walk small: only the first matches of each stage decide. Once a stage holds a
//! rule that matches every flow left below a branch (it is *full* on the remaining fields), no
//! later rule of that stage can come first, so those bits are cleared and branches that differ
//! only there merge. [`Precision::SecondMatch`] keeps the second full rule too, so that "what if
//! the first match did not exist" has one answer per region. Where platform traffic may lie,
//! nothing is cleared: platform flows meet only the rules naming their tag, not the first match.
//!
//! Exactness: every region is homogeneous in every predicate the evaluator reads (each rule's
//! match up to the stage's kept bits, each refiner), so the verdict of its example flow is the
//! verdict of all its flows. The brute-force property tests check this.

use crate::region::Region;
use nsg_model::rule::{covers_all_ports, ip_proto, protocol_has_ports, Direction, PortRange};
use nsg_policy::classify::{Atom, AxisId, Classifier, Domains, FieldRule, ProtocolSet};
use nsg_policy::compiled::{field_rule, CompiledPolicy, Verdict};
use nsg_policy::evaluate::RulePosition;
use nsg_policy::{Decision, Endpoint, Flow};
use nsg_tags::{context, PrefixSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::ControlFlow;
use std::rc::Rc;

/// A box of flows at a NIC, in the NIC's terms: the product of one set per field. Flows without
/// ports (protocols other than TCP and UDP) are inside only if both port sets are all ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowBox {
    pub protocols: ProtocolSet,
    /// `None`: every address.
    pub local: Option<PrefixSet>,
    pub local_ports: Vec<PortRange>,
    pub remote: Option<PrefixSet>,
    pub remote_ports: Vec<PortRange>,
}

impl FlowBox {
    /// Every flow.
    pub fn everything() -> FlowBox {
        FlowBox {
            protocols: ProtocolSet::ALL,
            local: None,
            local_ports: vec![PortRange::ALL],
            remote: None,
            remote_ports: vec![PortRange::ALL],
        }
    }

    /// Whether `flow` is in the box.
    pub fn contains(&self, flow: &Flow) -> bool {
        let address_in = |set: &Option<PrefixSet>, ip| set.as_ref().is_none_or(|s| s.contains(ip));
        let port_in = |ranges: &[PortRange], port: Option<u16>| match port {
            Some(p) if protocol_has_ports(flow.protocol) => ranges.iter().any(|r| r.contains(p)),
            _ => covers_all_ports(ranges),
        };
        self.protocols.contains(flow.protocol)
            && address_in(&self.local, flow.local.ip)
            && address_in(&self.remote, flow.remote.ip)
            && port_in(&self.local_ports, flow.local.port)
            && port_in(&self.remote_ports, flow.remote.port)
    }

    fn includes_portless(&self) -> bool {
        covers_all_ports(&self.local_ports) && covers_all_ports(&self.remote_ports)
    }

    /// Whether `rule` may match a flow of the box, judged by protocols and ports alone: a rule
    /// that cannot is left out of an analysis of the box (it would only cost time).
    fn may_meet(&self, rule: &FieldRule<'_>, direction: Direction) -> bool {
        let protocols = rule.protocols.intersection(&self.protocols);
        let (source_ports, destination_ports) = match direction {
            Direction::Inbound => (&self.remote_ports, &self.local_ports),
            Direction::Outbound => (&self.local_ports, &self.remote_ports),
        };
        let overlap = |a: &[PortRange], b: &[PortRange]| {
            a.iter()
                .any(|x| b.iter().any(|y| x.low <= y.high && y.low <= x.high))
        };
        let with_ports = protocols.with_ports();
        let (ported, portless) = (!with_ports.is_empty(), with_ports != protocols);
        (ported
            && overlap(&rule.source_ports, source_ports)
            && overlap(&rule.destination_ports, destination_ports))
            || (portless && rule.matches_portless && self.includes_portless())
    }

    /// The box as a classifier rule, in packet terms (inbound packets come from the remote end).
    fn field_rule(&self, direction: Direction) -> FieldRule<'_> {
        let (source, source_ports, destination, destination_ports) = match direction {
            Direction::Inbound => (
                &self.remote,
                &self.remote_ports,
                &self.local,
                &self.local_ports,
            ),
            Direction::Outbound => (
                &self.local,
                &self.local_ports,
                &self.remote,
                &self.remote_ports,
            ),
        };
        FieldRule {
            source: source.as_ref(),
            destination: destination.as_ref(),
            source_ports: source_ports.clone(),
            destination_ports: destination_ports.clone(),
            protocols: self.protocols,
            matches_portless: self.includes_portless(),
            active: true,
        }
    }
}

/// How much of each stage's match order a region must fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// The first matching rule of each stage: verdicts.
    FirstMatch,
    /// The first two: also the verdict if the first match were removed.
    SecondMatch,
}

/// The fields in the order the walk picks them: the small ones first, the remote address (the
/// service tags, thousands of atoms) last, where a branch's groups are cheapest to form.
const LEVELS: usize = 5;
const PROTOCOL: usize = 0;
const LOCAL: usize = 1;
const LOCAL_PORT: usize = 2;
const REMOTE_PORT: usize = 3;
const REMOTE: usize = 4;

/// The atoms of one field, and for each rule the bitmap of the atoms it matches.
struct Level {
    atoms: Vec<Atom>,
    /// Words of one atom bitmap.
    words: usize,
    /// `rows[rule * words..][..words]`: the atoms where `rule` matches.
    rows: Vec<u64>,
    /// Per rule, the words `[start, end)` outside which its row is zero: most rules match a
    /// few atoms of the address fields, and a split need not look further.
    spans: Vec<(u32, u32)>,
}

impl Level {
    fn new(atoms: Vec<Atom>, classifier: &Classifier) -> Level {
        let words = atoms.len().div_ceil(64).max(1);
        let mut rows = vec![0u64; classifier.rule_count() * words];
        for (a, atom) in atoms.iter().enumerate() {
            for (w, &bits) in classifier.class_bits(atom.class).iter().enumerate() {
                let mut bits = bits;
                while bits != 0 {
                    let rule = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    rows[rule * words + a / 64] |= 1 << (a % 64);
                }
            }
        }
        let spans = rows
            .chunks(words)
            .map(|row| {
                let start = row.iter().position(|&w| w != 0).unwrap_or(0);
                let end = row.iter().rposition(|&w| w != 0).map_or(0, |e| e + 1);
                (start as u32, end.max(start) as u32)
            })
            .collect();
        Level {
            atoms,
            words,
            rows,
            spans,
        }
    }

    fn row(&self, rule: u32) -> &[u64] {
        let start = rule as usize * self.words;
        &self.rows[start..start + self.words]
    }

    /// The row of `rule` as the words where it may be non-zero, and where they start.
    fn span(&self, rule: u32) -> (usize, &[u64]) {
        let (start, end) = self.spans[rule as usize];
        let row = self.row(rule);
        (start as usize, &row[start as usize..end as usize])
    }

    /// The bitmap of every atom.
    fn all(&self) -> Vec<u64> {
        let mut all = vec![u64::MAX; self.words];
        let spare = self.words * 64 - self.atoms.len();
        if spare > 0 {
            all[self.words - 1] >>= spare;
        }
        all
    }
}

/// An address family with or without ports: the flow space is the union of four such products.
struct Subspace {
    v6: bool,
    ported: bool,
    /// The atoms of each level; a portless subspace's port levels have one atom, "no port".
    levels: [Rc<Level>; LEVELS],
    /// `full_from[k]`: the rules that match every flow of this subspace on levels `k..`.
    full_from: [Vec<u64>; LEVELS + 1],
}

/// What one walk covers.
struct Walk {
    /// Only the flows this rule (in classifier order) matches.
    within: Option<u32>,
}

/// A branch being formed: atoms of one field that, so far, match the same rules.
struct Group {
    atoms: Vec<u64>,
    /// How many atoms `atoms` holds.
    count: u32,
    /// The rules matching every atom of the group (and the branch above), ascending by stage.
    rules: Vec<u32>,
    /// Per stage, how many of its kept rules match every flow below the branch.
    full_seen: Vec<u32>,
    /// Whether a platform refiner is among `rules`: then no rule is left out.
    platform: bool,
}

/// The flow space of one direction at a NIC, ready to walk, for one or more policies of that
/// NIC (the same NIC in an old and a new environment, for a diff).
pub struct Analysis<'p> {
    direction: Direction,
    policies: Vec<&'p CompiledPolicy>,
    classifier: Classifier,
    /// `[start, end)` of every stage, every policy's in turn, in the classifier's rule order.
    stage_ranges: Vec<(usize, usize)>,
    /// Where each policy's stages start in `stage_ranges`.
    policy_stages: Vec<usize>,
    /// The stage (index into `stage_ranges`) of every stage rule, in classifier order.
    stage_of: Vec<u32>,
    /// `[start, end)` of the platform refiners in the classifier's rule order.
    platform: (usize, usize),
    /// Index of the first caller refiner in the classifier's rule order.
    refiners_start: usize,
    depth: u32,
    subspaces: Vec<Subspace>,
}

/// One region of the walk.
pub struct Leaf<'a> {
    analysis: &'a Analysis<'a>,
    subspace: &'a Subspace,
    path: &'a [Vec<u64>; LEVELS],
    /// The rules that match the region and may decide, ascending.
    rules: &'a [u32],
    example: Flow,
    /// Whether every rule was a candidate (a whole walk), not one stage's ([`Analysis::walk_within`]).
    complete: bool,
}

impl<'p> Analysis<'p> {
    /// Prepares the walk of `space` in `direction` at the NIC of `policies` (all of the same NIC;
    /// its local addresses are theirs together). Each of `refiners` splits regions at its edge;
    /// [`Leaf::inside`] tells on which side a region lies.
    pub fn new(
        policies: &[&'p CompiledPolicy],
        direction: Direction,
        space: &FlowBox,
        refiners: &[FlowBox],
        precision: Precision,
    ) -> Analysis<'p> {
        let mut rules: Vec<FieldRule<'_>> = Vec::new();
        let mut stage_ranges = Vec::new();
        let mut policy_stages = Vec::new();
        for policy in policies {
            policy_stages.push(stage_ranges.len());
            for stage in policy.policy().stages(direction) {
                let start = rules.len();
                rules.extend(stage.rules.iter().map(|r| {
                    let mut rule = field_rule(r, policy.sets());
                    rule.active &= space.may_meet(&rule, direction);
                    rule
                }));
                stage_ranges.push((start, rules.len()));
            }
        }
        let platform_boxes = platform_refiners(direction);
        let smtp_boxes: Vec<FlowBox> = match direction {
            Direction::Inbound => Vec::new(),
            Direction::Outbound => policies.iter().map(|p| smtp_refiner(p)).collect(),
        };
        let platform_start = rules.len();
        rules.extend(platform_boxes.iter().map(|b| b.field_rule(direction)));
        let platform_end = rules.len();
        rules.extend(smtp_boxes.iter().map(|b| b.field_rule(direction)));
        let refiners_start = rules.len();
        rules.extend(refiners.iter().map(|b| b.field_rule(direction)));

        let nic_addresses = PrefixSet::from_nets(
            policies
                .iter()
                .flat_map(|p| p.policy().addresses.iter().copied()),
        );
        let local = match &space.local {
            Some(local) => nic_addresses.intersection(local),
            None => nic_addresses,
        };
        let remote = space.remote.clone();
        let domains = match direction {
            Direction::Inbound => Domains {
                source: remote.as_ref(),
                destination: Some(&local),
            },
            Direction::Outbound => Domains {
                source: Some(&local),
                destination: remote.as_ref(),
            },
        };
        let classifier = Classifier::build(&rules, &domains);
        let mut stage_of = vec![0u32; platform_start];
        for (s, &(start, end)) in stage_ranges.iter().enumerate() {
            stage_of[start..end].fill(s as u32);
        }
        let mut analysis = Analysis {
            stage_of,
            platform: (platform_start, platform_end),
            direction,
            policies: policies.to_vec(),
            classifier,
            stage_ranges,
            policy_stages,
            refiners_start,
            depth: match precision {
                Precision::FirstMatch => 1,
                Precision::SecondMatch => 2,
            },
            subspaces: Vec::new(),
        };
        for v6 in [false, true] {
            // The address fields are the same with and without ports: built once.
            let mut addresses = None;
            for ported in [true, false] {
                if let Some(subspace) = analysis.subspace(space, v6, ported, &mut addresses) {
                    analysis.subspaces.push(subspace);
                }
            }
        }
        analysis
    }

    /// How many combinations of one atom per field the flow space has: the flows a brute force
    /// over the reduced flow space would decide.
    pub fn atom_combinations(&self) -> f64 {
        self.subspaces
            .iter()
            .map(|s| {
                s.levels
                    .iter()
                    .map(|l| l.atoms.len() as f64)
                    .product::<f64>()
            })
            .sum()
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    pub fn policies(&self) -> &[&'p CompiledPolicy] {
        &self.policies
    }

    /// The atoms of one family with or without ports, or `None` if no flow of `space` is there.
    fn subspace(
        &self,
        space: &FlowBox,
        v6: bool,
        ported: bool,
        addresses: &mut Option<(Rc<Level>, Rc<Level>)>,
    ) -> Option<Subspace> {
        let c = &self.classifier;
        let (local_axis, remote_axis, local_port, remote_port) = match (self.direction, v6) {
            (Direction::Inbound, false) => (
                AxisId::DestinationV4,
                AxisId::SourceV4,
                AxisId::DestinationPort,
                AxisId::SourcePort,
            ),
            (Direction::Inbound, true) => (
                AxisId::DestinationV6,
                AxisId::SourceV6,
                AxisId::DestinationPort,
                AxisId::SourcePort,
            ),
            (Direction::Outbound, false) => (
                AxisId::SourceV4,
                AxisId::DestinationV4,
                AxisId::SourcePort,
                AxisId::DestinationPort,
            ),
            (Direction::Outbound, true) => (
                AxisId::SourceV6,
                AxisId::DestinationV6,
                AxisId::SourcePort,
                AxisId::DestinationPort,
            ),
        };
        let protocols: Vec<(u128, u128)> = (0..=u8::MAX)
            .filter(|&p| space.protocols.contains(p) && protocol_has_ports(p) == ported)
            .map(|p| (u128::from(p), u128::from(p)))
            .collect();
        let port_level = |axis: AxisId, allowed: &[PortRange], source: bool| {
            if ported {
                let allowed: Vec<(u128, u128)> = allowed
                    .iter()
                    .map(|r| (u128::from(r.low), u128::from(r.high)))
                    .collect();
                clip(c.atoms(axis), &allowed)
            } else {
                vec![Atom {
                    class: c.portless_class(source),
                    intervals: Vec::new(),
                }]
            }
        };
        if !ported && !space.includes_portless() {
            return None;
        }
        let local_is_source = self.direction == Direction::Outbound;
        let protocol_atoms = clip(c.atoms(AxisId::Protocol), &protocols);
        let local_port_atoms = port_level(local_port, &space.local_ports, local_is_source);
        let remote_port_atoms = port_level(remote_port, &space.remote_ports, !local_is_source);
        if [&protocol_atoms, &local_port_atoms, &remote_port_atoms]
            .iter()
            .any(|atoms| atoms.is_empty())
        {
            return None;
        }
        let (local, remote) = addresses
            .get_or_insert_with(|| {
                (
                    Rc::new(Level::new(c.atoms(local_axis), c)),
                    Rc::new(Level::new(c.atoms(remote_axis), c)),
                )
            })
            .clone();
        if local.atoms.is_empty() || remote.atoms.is_empty() {
            return None;
        }
        let levels = [
            Rc::new(Level::new(protocol_atoms, c)),
            local,
            Rc::new(Level::new(local_port_atoms, c)),
            Rc::new(Level::new(remote_port_atoms, c)),
            remote,
        ];
        let words = c.rule_count().div_ceil(64).max(1);
        let mut full_from: [Vec<u64>; LEVELS + 1] = std::array::from_fn(|_| vec![u64::MAX; words]);
        for k in (0..LEVELS).rev() {
            let mut all = full_from[k + 1].clone();
            for atom in &levels[k].atoms {
                and_into(&mut all, c.class_bits(atom.class));
            }
            full_from[k] = all;
        }
        Some(Subspace {
            v6,
            ported,
            levels,
            full_from,
        })
    }

    /// Visits every region once; `visit` may stop the walk early.
    pub fn walk(&self, visit: impl FnMut(&Leaf<'_>) -> ControlFlow<()>) -> ControlFlow<()> {
        let every_rule: Vec<u32> = (0..self.classifier.rule_count() as u32).collect();
        self.walk_from(None, &every_rule, visit)
    }

    /// Visits every region inside the match of rule `rule` of stage `stage` of policy `policy`
    /// (the flows the rule matches, whatever comes before it): what decides them instead.
    /// The regions are cut by that stage's rules up to `rule` (and the refiners) only, so of the
    /// leaves' rule lists only [`Leaf::stage_matches`] of that stage is meaningful — which
    /// keeps the walk of one rule's match as short as the rules before it.
    pub fn walk_within(
        &self,
        policy: usize,
        stage: usize,
        rule: usize,
        visit: impl FnMut(&Leaf<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let (start, _) = self.stage_ranges[self.policy_stages[policy] + stage];
        let within = (start + rule) as u32;
        let candidates: Vec<u32> = (start as u32..=within)
            .chain(self.platform.0 as u32..self.classifier.rule_count() as u32)
            .collect();
        self.walk_from(Some(within), &candidates, visit)
    }

    fn walk_from(
        &self,
        within: Option<u32>,
        candidates: &[u32],
        mut visit: impl FnMut(&Leaf<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let walk = Walk { within };
        for subspace in &self.subspaces {
            let mut path: [Vec<u64>; LEVELS] = Default::default();
            self.descend(&walk, subspace, 0, candidates, &mut path, &mut visit)?;
        }
        ControlFlow::Continue(())
    }

    fn descend(
        &self,
        walk: &Walk,
        subspace: &Subspace,
        level: usize,
        rules: &[u32],
        path: &mut [Vec<u64>; LEVELS],
        visit: &mut impl FnMut(&Leaf<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if level == LEVELS {
            let leaf = Leaf {
                analysis: self,
                subspace,
                path,
                rules,
                example: self.example(subspace, path),
                complete: walk.within.is_none(),
            };
            return visit(&leaf);
        }
        let field = &subspace.levels[level];
        let full = &subspace.full_from[level + 1];
        let mut atoms = field.all();
        if let Some(rule) = walk.within {
            for (a, &r) in atoms.iter_mut().zip(field.row(rule)) {
                *a &= r;
            }
            if atoms.iter().all(|&a| a == 0) {
                return ControlFlow::Continue(());
            }
        }
        let mut groups = vec![Group {
            count: atoms.iter().map(|w| w.count_ones()).sum(),
            atoms,
            rules: Vec::new(),
            full_seen: vec![0; self.stage_ranges.len()],
            platform: false,
        }];
        // Refiners first (they come last in rule order), so that every group knows whether
        // platform traffic may be in it before any stage's rules are left out.
        let first_refiner = rules.partition_point(|&r| (r as usize) < self.platform.0);
        let (stage_rules, refiner_rules) = rules.split_at(first_refiner);
        for &rule in refiner_rules {
            let platform = (self.platform.0..self.platform.1).contains(&(rule as usize));
            split(
                &mut groups,
                field.span(rule),
                |_| true,
                |g| {
                    g.rules.push(rule);
                    g.platform |= platform;
                },
            );
        }
        for &rule in stage_rules {
            let stage = self.stage_of[rule as usize] as usize;
            let is_full = full[rule as usize / 64] & (1 << (rule % 64)) != 0;
            // A group that already holds `depth` rules of the stage matching all of it takes no
            // more of them (unless platform traffic may be in it): it is not even looked at.
            split(
                &mut groups,
                field.span(rule),
                |g| g.platform || g.full_seen[stage] < self.depth,
                |g| {
                    g.rules.push(rule);
                    g.full_seen[stage] += u32::from(is_full);
                },
            );
        }
        for mut group in groups {
            // The branch's atoms, as a bitmap: most regions are never materialised.
            group.rules.sort_unstable();
            path[level] = group.atoms;
            self.descend(walk, subspace, level + 1, &group.rules, path, visit)?;
        }
        ControlFlow::Continue(())
    }

    /// A flow of the region of `path`: each field's value from its first atom.
    fn example(&self, subspace: &Subspace, path: &[Vec<u64>; LEVELS]) -> Flow {
        let first = |level: usize| &subspace.levels[level].atoms[first_bit(&path[level])].intervals;
        let protocols: Vec<(u128, u128)> = set_bits(&path[PROTOCOL])
            .flat_map(|a| subspace.levels[PROTOCOL].atoms[a].intervals.iter().copied())
            .collect();
        let protocol = [
            ip_proto::TCP,
            ip_proto::UDP,
            ip_proto::ICMP,
            ip_proto::ICMPV6,
        ]
        .into_iter()
        .find(|&p| {
            protocols
                .iter()
                .any(|&(l, h)| l <= u128::from(p) && u128::from(p) <= h)
        })
        .unwrap_or(protocols[0].0 as u8);
        let address = |level: usize| {
            let (low, high) = first(level)[0];
            let value = if high > low { low + 1 } else { low };
            if subspace.v6 {
                IpAddr::V6(Ipv6Addr::from(value))
            } else {
                IpAddr::V4(Ipv4Addr::from(value as u32))
            }
        };
        let port = |level: usize| {
            subspace.ported.then(|| {
                let (low, high) = first(level)[0];
                let value = if low == 0 && high > 0 { 1 } else { low };
                value as u16
            })
        };
        Flow {
            direction: self.direction,
            protocol,
            local: Endpoint {
                ip: address(LOCAL),
                port: port(LOCAL_PORT),
            },
            remote: Endpoint {
                ip: address(REMOTE),
                port: port(REMOTE_PORT),
            },
        }
    }
}

impl Leaf<'_> {
    /// A flow of the region; every flow of it has this one's verdict under each policy.
    pub fn example(&self) -> &Flow {
        &self.example
    }

    /// Whether the region lies inside refiner `i` (else it lies wholly outside).
    pub fn inside(&self, refiner: usize) -> bool {
        let rule = (self.analysis.refiners_start + refiner) as u32;
        self.rules.binary_search(&rule).is_ok()
    }

    /// The rules of stage `stage` of policy `policy` that match the region and may come first,
    /// as indices into the stage, in order (the first is the stage's match).
    pub fn stage_matches(&self, policy: usize, stage: usize) -> Vec<usize> {
        self.stage_match_iter(policy, stage).collect()
    }

    fn stage_match_iter(&self, policy: usize, stage: usize) -> impl Iterator<Item = usize> + '_ {
        let s = self.analysis.policy_stages[policy] + stage;
        let (start, end) = self.analysis.stage_ranges[s];
        let from = self.rules.partition_point(|&r| (r as usize) < start);
        self.rules[from..]
            .iter()
            .map(|&r| r as usize)
            .take_while(move |&r| r < end)
            .map(move |rule| rule - start)
    }

    /// The verdict of the region's flows under policy `policy`, as if the rule at `removed` did
    /// not exist: read off the region's first matches (a [`Precision::SecondMatch`] walk keeps
    /// the match after a removed one), no classifier lookup. Not for the leaves of
    /// [`Analysis::walk_within`], which know one stage only.
    pub fn verdict(&self, policy: usize, removed: Option<RulePosition>) -> Verdict {
        debug_assert!(self.complete, "a walk_within leaf knows one stage only");
        self.analysis.policies[policy].verdict_from_first_matches(&self.example, removed, |s| {
            self.stage_match_iter(policy, s)
                .find(|&rule| removed != Some(RulePosition { stage: s, rule }))
        })
    }

    /// The reference's full decision of the region's flows under policy `policy`.
    pub fn decision(&self, policy: usize) -> Decision {
        self.analysis.policies[policy].decision_of(self.verdict(policy, None), &self.example)
    }

    /// The region as sets, one per field.
    pub fn region(&self) -> Region {
        let s = self.subspace;
        let intervals = |level: usize| -> Vec<(u128, u128)> {
            let mut all: Vec<(u128, u128)> = set_bits(&self.path[level])
                .flat_map(|a| s.levels[level].atoms[a].intervals.iter().copied())
                .collect();
            all.sort_unstable();
            all
        };
        let addresses = |level: usize| {
            let ranges = intervals(level);
            if s.v6 {
                PrefixSet::from_ranges_v6(
                    ranges
                        .into_iter()
                        .map(|(l, h)| (Ipv6Addr::from(l), Ipv6Addr::from(h))),
                )
            } else {
                PrefixSet::from_ranges_v4(
                    ranges
                        .into_iter()
                        .map(|(l, h)| (Ipv4Addr::from(l as u32), Ipv4Addr::from(h as u32))),
                )
            }
        };
        let ports = |level: usize| {
            s.ported.then(|| {
                crate::region::merge_ports(
                    intervals(level)
                        .into_iter()
                        .map(|(l, h)| PortRange {
                            low: l as u16,
                            high: h as u16,
                        })
                        .collect(),
                )
            })
        };
        Region {
            direction: self.analysis.direction,
            protocols: crate::region::merge_protocols(
                intervals(PROTOCOL)
                    .into_iter()
                    .map(|(l, h)| (l as u8, h as u8))
                    .collect(),
            ),
            local: addresses(LOCAL),
            local_ports: ports(LOCAL_PORT),
            remote: addresses(REMOTE),
            remote_ports: ports(REMOTE_PORT),
        }
    }
}

/// Splits every group that `takes` the rule by its row (the atoms where it matches, as its
/// non-zero words and where they start): the atoms inside become a group of their own, unless
/// they are the whole group, and `admit` records the rule in it.
fn split(
    groups: &mut Vec<Group>,
    (start, row): (usize, &[u64]),
    takes: impl Fn(&Group) -> bool,
    mut admit: impl FnMut(&mut Group),
) {
    let end = start + row.len();
    for i in 0..groups.len() {
        let g = &groups[i];
        if !takes(g) {
            continue;
        }
        let inside: u32 = g.atoms[start..end]
            .iter()
            .zip(row)
            .map(|(&a, &r)| (a & r).count_ones())
            .sum();
        if inside == 0 {
            continue;
        }
        if inside == g.count {
            admit(&mut groups[i]);
            continue;
        }
        let mut atoms = vec![0u64; g.atoms.len()];
        for ((part, &a), &r) in atoms[start..end]
            .iter_mut()
            .zip(&g.atoms[start..end])
            .zip(row)
        {
            *part = a & r;
        }
        let mut part = Group {
            atoms,
            count: inside,
            rules: g.rules.clone(),
            full_seen: g.full_seen.clone(),
            platform: g.platform,
        };
        admit(&mut part);
        let g = &mut groups[i];
        for (a, &r) in g.atoms[start..end].iter_mut().zip(row) {
            *a &= !r;
        }
        g.count -= inside;
        groups.push(part);
    }
}

/// The indices of the set bits of `bits`, ascending.
fn set_bits(bits: &[u64]) -> impl Iterator<Item = usize> + '_ {
    bits.iter().enumerate().flat_map(|(w, &word)| {
        let mut word = word;
        std::iter::from_fn(move || {
            (word != 0).then(|| {
                let bit = w * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                bit
            })
        })
    })
}

/// The index of the lowest set bit of a non-empty bitmap.
fn first_bit(bits: &[u64]) -> usize {
    set_bits(bits).next().expect("a branch has atoms")
}

fn and_into(acc: &mut [u64], other: &[u64]) {
    for (a, &b) in acc.iter_mut().zip(other) {
        *a &= b;
    }
}

/// `atoms` cut down to `allowed` (sorted, disjoint), dropping the atoms left empty.
fn clip(atoms: Vec<Atom>, allowed: &[(u128, u128)]) -> Vec<Atom> {
    let mut allowed = allowed.to_vec();
    allowed.sort_unstable();
    atoms
        .into_iter()
        .filter_map(|atom| {
            let intervals: Vec<(u128, u128)> = atom
                .intervals
                .iter()
                .flat_map(|&(l, h)| {
                    allowed
                        .iter()
                        .filter(move |&&(al, ah)| al <= h && l <= ah)
                        .map(move |&(al, ah)| (l.max(al), h.min(ah)))
                })
                .collect();
            (!intervals.is_empty()).then_some(Atom {
                class: atom.class,
                intervals,
            })
        })
        .collect()
}

/// Boxes of the platform exceptions: DHCP, and DNS, IMDS and licensing, which meet only the
/// rules naming their tag (reference §3.8). Outbound only.
fn platform_refiners(direction: Direction) -> Vec<FlowBox> {
    if direction == Direction::Inbound {
        return Vec::new();
    }
    let tcp = ProtocolSet::default().with(ip_proto::TCP);
    let udp = ProtocolSet::default().with(ip_proto::UDP);
    let both = tcp.with(ip_proto::UDP);
    let to = |protocols, hosts: &[Ipv4Addr], port: u16| FlowBox {
        protocols,
        local: None,
        local_ports: vec![PortRange::ALL],
        remote: Some(PrefixSet::from_nets(
            hosts.iter().map(|&h| ipnet::IpNet::from(IpAddr::V4(h))),
        )),
        remote_ports: vec![PortRange {
            low: port,
            high: port,
        }],
    };
    vec![
        to(udp, &[context::HOST_VIP, Ipv4Addr::BROADCAST], 67),
        to(both, &[context::HOST_VIP], 53),
        to(tcp, &[context::IMDS], 80),
        to(tcp, &context::KMS_ADDRESSES, 1688),
    ]
}

/// Outbound TCP 25 to the policy's `Internet`: the SMTP block (reference §3.9).
fn smtp_refiner(policy: &CompiledPolicy) -> FlowBox {
    FlowBox {
        protocols: ProtocolSet::default().with(ip_proto::TCP),
        local: None,
        local_ports: vec![PortRange::ALL],
        remote: Some(policy.sets().get(policy.policy().internet).clone()),
        remote_ports: vec![PortRange { low: 25, high: 25 }],
    }
}

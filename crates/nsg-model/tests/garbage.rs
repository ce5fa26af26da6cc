//! The loader, the validator and the token parsers never panic, whatever they are given, and
//! every validation error they report is usable: it names a resource and a field, says why, and
//! carries one of Azure's codes.
//!
//! Inputs range from noise (arbitrary text and bytes) to documents that are almost right: a
//! valid environment with a few random edits — a value of the wrong type, a missing key, a
//! duplicated rule, a huge number, an empty or non-ASCII string — which is where validation code
//! indexes, converts and unwraps.

use nsg_model::rule::{AddressToken, AddressTokenError, PortRange};
use nsg_model::{validate, Environment, ErrorCode, KnownTags, ResourceId, ValidationError};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The tags a small tag file would provide, ignoring case as Azure does.
struct TestTags;

impl KnownTags for TestTags {
    fn is_known_tag(&self, name: &str) -> bool {
        ["VirtualNetwork", "Internet", "AzureLoadBalancer", "Storage"]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
    }
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported by the run; no regression files next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Every error names where and why, with a code Azure uses.
fn check_error(e: &ValidationError) -> Result<(), TestCaseError> {
    prop_assert!(!e.resource.is_empty(), "error without a resource: {e:?}");
    prop_assert!(!e.field.is_empty(), "error without a field: {e:?}");
    prop_assert!(!e.message.is_empty(), "error without a message: {e:?}");
    prop_assert!(
        ErrorCode::ALL.iter().any(|c| c.as_str() == e.code.as_str()),
        "error with an unlisted code: {e:?}"
    );
    let _ = e.to_string();
    Ok(())
}

/// Validates whatever part of the input loaded; the result must be usable either way.
fn validate_checked(env: &Environment) -> Result<(), TestCaseError> {
    match validate(env, &TestTags) {
        Ok(model) => {
            // A model is usable: its lookups find what it holds.
            for nsg in &model.network_security_groups {
                prop_assert!(model.network_security_group(&nsg.id).is_some());
            }
            for nic in &model.network_interfaces {
                prop_assert!(model.network_interface(&nic.id).is_some());
                let _ = nic.primary_subnet().map(|s| model.subnet(s));
            }
            Ok(())
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty(), "validation failed without an error");
            for e in &errors {
                check_error(e)?;
            }
            Ok(())
        }
    }
}

/// Loads `text` (an error is fine, a panic is not) and validates whatever loaded.
fn load_text(text: &str) -> Result<(), TestCaseError> {
    let mut env = Environment::new();
    if let Err(e) = env.add_json("garbage.json", text) {
        let _ = e.to_string();
    }
    validate_checked(&env)
}

fn load_value(value: Value) -> Result<(), TestCaseError> {
    let mut env = Environment::new();
    if let Err(e) = env.add_value("mutated.json", value) {
        let _ = e.to_string();
    }
    validate_checked(&env)
}

// ---------------------------------------------------------------------------------------------
// The seed: a small valid environment
// ---------------------------------------------------------------------------------------------

const NETWORK: &str = "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network";

fn id(kind: &str, name: &str) -> String {
    format!("{NETWORK}/{kind}/{name}")
}

/// An ASG, an NSG with rules of every address form, a standalone rule, a VNet with a subnet and
/// a peering, a standalone subnet, a NIC with two IP configurations, and a VM — in ARM's nested
/// shape.
fn seed() -> Value {
    let nsg = id("networkSecurityGroups", "nsg1");
    let vnet = id("virtualNetworks", "vnet1");
    let asg = id("applicationSecurityGroups", "asg1");
    let subnet = format!("{vnet}/subnets/subnet1");
    json!([
        {"id": asg, "name": "asg1", "type": "Microsoft.Network/applicationSecurityGroups",
         "location": "westeurope", "properties": {}},
        {"id": nsg, "name": "nsg1", "type": "Microsoft.Network/networkSecurityGroups",
         "location": "westeurope",
         "properties": {"flushConnection": false, "securityRules": [
            {"name": "allow-ssh", "id": format!("{nsg}/securityRules/allow-ssh"), "properties": {
                "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22",
                "sourceAddressPrefix": "Internet", "destinationAddressPrefix": "10.0.1.0/24",
                "access": "Allow", "priority": 100, "direction": "Inbound",
                "description": "SSH from anywhere"}},
            {"name": "deny-list", "properties": {
                "protocol": "*", "sourcePortRanges": ["1000-2000", "443"],
                "destinationPortRanges": ["80", "8080-8090"],
                "sourceAddressPrefixes": ["203.0.113.0/24", "198.51.100.7"],
                "destinationAddressPrefix": "*",
                "access": "Deny", "priority": 200, "direction": "Inbound"}},
            {"name": "web-to-storage", "properties": {
                "protocol": "Udp", "sourcePortRange": "*", "destinationPortRange": "0-65535",
                "sourceApplicationSecurityGroups": [{"id": asg}],
                "destinationAddressPrefix": "Storage",
                "access": "Allow", "priority": 4096, "direction": "Outbound"}},
            {"name": "v6", "properties": {
                "protocol": "Icmp", "sourcePortRange": "*", "destinationPortRange": "*",
                "sourceAddressPrefixes": ["fd00::/48", "2001:db8::1"],
                "destinationAddressPrefix": "fd00:0:0:1::4",
                "access": "Deny", "priority": 300, "direction": "Outbound"}}
         ]}},
        {"id": format!("{nsg}/securityRules/standalone"), "name": "standalone",
         "type": "Microsoft.Network/networkSecurityGroups/securityRules",
         "properties": {"protocol": "Esp", "sourcePortRange": "*", "destinationPortRange": "*",
            "sourceAddressPrefix": "VirtualNetwork", "destinationAddressPrefix": "AzureLoadBalancer",
            "access": "Allow", "priority": 150, "direction": "Inbound"}},
        {"id": vnet, "name": "vnet1", "type": "Microsoft.Network/virtualNetworks",
         "location": "westeurope",
         "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16", "fd00::/48"]},
            "flowTimeoutInMinutes": 10,
            "subnets": [{"id": subnet, "name": "subnet1", "properties": {
                "addressPrefixes": ["10.0.1.0/24", "fd00:0:0:1::/64"],
                "networkSecurityGroup": {"id": nsg}}}],
            "virtualNetworkPeerings": [{"name": "peer", "properties": {
                "remoteVirtualNetwork": {"id": id("virtualNetworks", "vnet2")},
                "remoteAddressSpace": {"addressPrefixes": ["10.1.0.0/16"]},
                "peeringState": "Connected"}}]
         }},
        {"id": format!("{vnet}/subnets/subnet2"), "name": "subnet2",
         "type": "Microsoft.Network/virtualNetworks/subnets",
         "properties": {"addressPrefix": "10.0.2.0/24"}},
        {"id": id("networkInterfaces", "nic1"), "name": "nic1",
         "type": "Microsoft.Network/networkInterfaces", "location": "westeurope",
         "properties": {
            "networkSecurityGroup": {"id": nsg},
            "macAddress": "00-0D-3A-00-00-01",
            "virtualMachine": {"id": "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1"},
            "ipConfigurations": [
                {"name": "ipconfig1", "properties": {"privateIPAddress": "10.0.1.4",
                    "privateIPAllocationMethod": "Static", "subnet": {"id": subnet},
                    "primary": true, "applicationSecurityGroups": [{"id": asg}]}},
                {"name": "ipconfig2", "properties": {"privateIPAddress": "fd00:0:0:1::4",
                    "privateIPAddressVersion": "IPv6", "subnet": {"id": subnet},
                    "primary": false, "applicationSecurityGroups": [{"id": asg}]}}
            ]}},
        {"id": "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1",
         "name": "vm1", "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
         "properties": {"networkProfile": {"networkInterfaces": [{"id": id("networkInterfaces", "nic1")}]}}}
    ])
}

/// Moves a resource's `properties` into the resource itself, as the Azure CLI prints it.
fn flatten_resource(resource: &mut Value) {
    let Value::Object(map) = resource else { return };
    if let Some(Value::Object(properties)) = map.remove("properties") {
        for (k, mut v) in properties {
            if matches!(
                k.as_str(),
                "securityRules" | "subnets" | "ipConfigurations" | "virtualNetworkPeerings"
            ) {
                if let Value::Array(items) = &mut v {
                    items.iter_mut().for_each(flatten_resource);
                }
            }
            map.insert(k, v);
        }
    }
}

/// The seed as the Azure CLI prints it: properties flattened into each resource.
fn flat_seed() -> Value {
    let mut seed = seed();
    if let Value::Array(items) = &mut seed {
        items.iter_mut().for_each(flatten_resource);
    }
    seed
}

#[test]
fn seeds_are_valid() {
    for seed in [seed(), flat_seed(), json!({"value": seed()})] {
        let mut env = Environment::new();
        env.add_value("seed.json", seed).expect("the seed loads");
        if let Err(errors) = validate(&env, &TestTags) {
            panic!("the seed is invalid: {errors:#?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    At(usize),
}

/// The path of every node under `value`, the root (`[]`) included, parents before children.
fn paths(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        out.push(path.clone());
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    path.push(Step::Key(k.clone()));
                    walk(v, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    path.push(Step::At(i));
                    walk(v, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn node<'v>(value: &'v Value, path: &[Step]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.get(k.as_str()),
        Step::At(i) => v.get(*i),
    })
}

fn node_mut<'v>(value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::At(i) => v.get_mut(*i),
    })
}

/// One random edit of a document.
#[derive(Clone, Debug)]
enum Mutation {
    /// Replace a node — most are leaves — with another value.
    Replace(Index, Value),
    /// Replace a leaf only (a value of a field rather than a whole object).
    ReplaceLeaf(Index, Value),
    /// Remove a key from an object or an element from an array.
    Delete(Index),
    /// Replace the value of a key the model reads, in one of the objects that have it.
    ReplaceField(Index, &'static str, Value),
    /// Remove a key the model reads from one of the objects that have it (`id`, `name`,
    /// `priority`, …): random deletions rarely hit the keys that matter.
    DeleteField(Index, &'static str),
    /// Copy an element of an array next to itself (a rule twice, a subnet twice, …).
    Duplicate(Index),
    /// Add a key that the model knows to an object (e.g. `sourceAddressPrefixes` next to
    /// `sourceAddressPrefix`).
    Insert(Index, &'static str, Value),
}

/// Keys the model reads, so that inserted keys and random objects look like ARM.
const KEYS: &[&str] = &[
    "id",
    "name",
    "type",
    "location",
    "properties",
    "value",
    "securityRules",
    "defaultSecurityRules",
    "protocol",
    "access",
    "direction",
    "priority",
    "description",
    "sourcePortRange",
    "sourcePortRanges",
    "destinationPortRange",
    "destinationPortRanges",
    "sourceAddressPrefix",
    "sourceAddressPrefixes",
    "sourceApplicationSecurityGroups",
    "destinationAddressPrefix",
    "destinationAddressPrefixes",
    "destinationApplicationSecurityGroups",
    "addressSpace",
    "addressPrefixes",
    "addressPrefix",
    "subnets",
    "subnet",
    "networkSecurityGroup",
    "ipConfigurations",
    "privateIPAddress",
    "applicationSecurityGroups",
    "primary",
    "virtualNetworkPeerings",
    "remoteVirtualNetwork",
    "remoteAddressSpace",
    "remoteVirtualNetworkAddressSpace",
    "peeringState",
    "flowTimeoutInMinutes",
    "flushConnection",
    "networkProfile",
    "networkInterfaces",
    "virtualMachine",
];

/// Strings that validation code has to think about: empty, blank, non-ASCII, NUL, very long,
/// almost-valid enum values, addresses, ports, tags and ids.
fn tricky_string() -> impl Strategy<Value = String> {
    let fixed: Vec<String> = [
        "",
        " ",
        "*",
        "-",
        "🦀",
        "ü",
        "İ",
        "\u{0}",
        "\u{feff}Tcp",
        "Tcp",
        "TCP",
        "Any",
        "allow",
        "Deny",
        "inbound",
        "Outbound",
        "10.0.0.0/8",
        "10.0.1.5/8",
        "10.0.0.0/33",
        "fd00::/129",
        "::",
        "::/0",
        "0.0.0.0/0",
        "fe80::1%eth0",
        "255.255.255.255",
        "0-65535",
        "65535-0",
        "65536",
        "-1",
        "1-2-3",
        "80,443",
        "VirtualNetwork",
        "VIRTUAL_NETWORK",
        "Storage",
        "Storage.WestEurope",
        "NoSuchTag",
        "/",
        "//",
        "/subscriptions/",
        "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/networkSecurityGroups/nsg1",
        "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/networkSecurityGroups/nsg1/",
        "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/networkSecurityGroups/nsg1/securityRules/x",
        "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/subnet1",
        "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/nope",
        "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/applicationSecurityGroups/asg1",
        "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/networkInterfaces/nic1",
        "/SUBSCRIPTIONS/SUB1/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.NETWORK/VIRTUALNETWORKS/VNET1",
        "Microsoft.Network/networkSecurityGroups",
        "Microsoft.Network/networkSecurityGroups/securityRules",
        "Microsoft.Network/virtualNetworks",
        "Microsoft.Network/virtualNetworks/subnets",
        "Microsoft.Network/networkInterfaces",
        "Microsoft.Network/applicationSecurityGroups",
        "Microsoft.Compute/virtualMachines",
        "eastus",
        "West Europe",
        "Disconnected",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    prop_oneof![
        6 => select(fixed),
        1 => Just("a".repeat(81)),
        1 => Just("é".repeat(141)),
        1 => Just("x".repeat(5000)),
        3 => any::<String>(),
        2 => "[0-9a-fA-F:./%*-]{0,24}",
    ]
}

/// Numbers at the edges: of priorities (100, 4096), ports, timeouts (4–30), `i64`, `u64`, and
/// `f64` (1e300, fractions, negative zero).
fn tricky_number() -> impl Strategy<Value = Value> {
    let fixed = vec![
        json!(0),
        json!(-1),
        json!(1),
        json!(3),
        json!(4),
        json!(30),
        json!(31),
        json!(99),
        json!(100),
        json!(4096),
        json!(4097),
        json!(65000),
        json!(65535),
        json!(65536),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(1u64 << 63),
        json!(u64::MAX),
        json!(1e300),
        json!(-1e300),
        json!(0.5),
        json!(100.0),
        json!(-0.0),
        json!(f64::MIN_POSITIVE),
    ];
    prop_oneof![
        3 => select(fixed),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
    ]
}

/// Any JSON value, shallow, with ARM-looking keys and tricky leaves.
fn garbage_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => tricky_number(),
        4 => tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let key = prop_oneof![3 => select(KEYS).prop_map(str::to_string), 1 => tricky_string()];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A key of [`KEYS`], the envelope's `id`, `name` and `type` more often: every document has them
/// and every error must still name its document without them.
fn key_that_matters() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        1 => select(vec!["id", "name", "type"]),
        2 => select(KEYS),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (any::<Index>(), garbage_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        4 => (any::<Index>(), garbage_value()).prop_map(|(i, v)| Mutation::ReplaceLeaf(i, v)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        3 => (any::<Index>(), key_that_matters(), garbage_value())
            .prop_map(|(i, k, v)| Mutation::ReplaceField(i, k, v)),
        3 => (any::<Index>(), key_that_matters()).prop_map(|(i, k)| Mutation::DeleteField(i, k)),
        1 => any::<Index>().prop_map(Mutation::Duplicate),
        2 => (any::<Index>(), select(KEYS), garbage_value())
            .prop_map(|(i, k, v)| Mutation::Insert(i, k, v)),
    ]
}

/// `[3].properties.securityRules[1].name`
fn show(path: &[Step]) -> String {
    let mut out = String::from("$");
    for step in path {
        match step {
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::At(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Applies one edit; returns what it did, for failure messages (`None` if nothing fit).
fn apply(doc: &mut Value, mutation: &Mutation) -> Option<String> {
    let all = paths(doc);
    let pick = |index: &Index, filter: &dyn Fn(&Value) -> bool| -> Option<Vec<Step>> {
        let candidates: Vec<&Vec<Step>> = all
            .iter()
            .filter(|p| node(doc, p).is_some_and(filter))
            .collect();
        (!candidates.is_empty()).then(|| index.get(&candidates).to_vec())
    };
    let replace = |doc: &mut Value, path: &[Step], v: &Value| {
        *node_mut(doc, path)? = v.clone();
        Some(format!("{} = {v}", show(path)))
    };
    match mutation {
        Mutation::Replace(i, v) => {
            let path: &Vec<Step> = i.get(&all);
            replace(doc, path, v)
        }
        Mutation::ReplaceLeaf(i, v) => {
            let path = pick(i, &|n| !n.is_object() && !n.is_array())?;
            replace(doc, &path, v)
        }
        Mutation::ReplaceField(i, key, v) => {
            let mut path = pick(i, &|n| n.get(key).is_some())?;
            path.push(Step::Key(key.to_string()));
            replace(doc, &path, v)
        }
        Mutation::Delete(i) => {
            // Delete the picked node from its parent (the root cannot be deleted).
            let path: &Vec<Step> = i.get(&all);
            let (last, parent) = path.split_last()?;
            match (node_mut(doc, parent)?, last) {
                (Value::Object(map), Step::Key(k)) => {
                    map.remove(k)?;
                }
                (Value::Array(items), Step::At(n)) if *n < items.len() => {
                    items.remove(*n);
                }
                _ => return None,
            }
            Some(format!("delete {}", show(path)))
        }
        Mutation::DeleteField(i, key) => {
            let path = pick(i, &|n| n.get(key).is_some())?;
            let Value::Object(map) = node_mut(doc, &path)? else {
                return None;
            };
            map.remove(*key)?;
            Some(format!("delete {}.{key}", show(&path)))
        }
        Mutation::Duplicate(i) => {
            let path = pick(i, &|v| v.as_array().is_some_and(|a| !a.is_empty()))?;
            let Value::Array(items) = node_mut(doc, &path)? else {
                return None;
            };
            let n = i.index(items.len());
            items.insert(n, items[n].clone());
            Some(format!("duplicate {}[{n}]", show(&path)))
        }
        Mutation::Insert(i, key, v) => {
            let path = pick(i, &Value::is_object)?;
            let Value::Object(map) = node_mut(doc, &path)? else {
                return None;
            };
            map.insert(key.to_string(), v.clone());
            Some(format!("{}.{key} = {v}", show(&path)))
        }
    }
}

/// How the documents reach the loader.
#[derive(Clone, Copy, Debug)]
enum Envelope {
    /// A JSON array of resources.
    Array,
    /// `{"value": [...]}`, as list operations return.
    ValueList,
    /// One document per resource, as `az … show` for each.
    OneByOne,
}

/// Which seed, which edits, which envelope. The edits are applied in the test, so that a failure
/// shows (and shrinks) the list of edits rather than the whole edited document.
fn edits() -> impl Strategy<Value = (bool, Vec<Mutation>, Envelope)> {
    (
        prop::bool::weighted(0.25),
        prop::collection::vec(mutation(), 1..=5),
        prop_oneof![
            Just(Envelope::Array),
            Just(Envelope::ValueList),
            Just(Envelope::OneByOne)
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(proptest_config(1024))]

    /// Any text: almost never JSON, so this is the JSON error path.
    #[test]
    fn add_json_never_panics_on_arbitrary_text(text in any::<String>()) {
        load_text(&text)?;
    }

    /// Any bytes, read the way a CLI reads a file it was told is UTF-8.
    #[test]
    fn add_json_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        load_text(&String::from_utf8_lossy(&bytes))?;
    }

    /// Valid JSON of any shape: objects and arrays with ARM keys and tricky leaves.
    #[test]
    fn add_json_never_panics_on_arbitrary_json(value in garbage_value()) {
        load_text(&value.to_string())?;
        load_value(value)?;
    }
}

proptest! {
    #![proptest_config(proptest_config(1024))]

    /// The seed's text with bytes cut out or put in: mostly broken JSON that starts like ARM,
    /// sometimes valid JSON with a changed value.
    #[test]
    fn add_json_never_panics_on_damaged_text(
        cuts in prop::collection::vec((any::<Index>(), 0usize..8, "[\\[\\]{}:,\"0-9a-z/* -]{0,3}"), 1..=4),
        flat in any::<bool>(),
    ) {
        let mut text: Vec<char> = if flat { flat_seed() } else { seed() }.to_string().chars().collect();
        for (at, remove, insert) in &cuts {
            let start = at.index(text.len() + 1);
            let end = (start + remove).min(text.len());
            text.splice(start..end, insert.chars());
        }
        load_text(&text.into_iter().collect::<String>())?;
    }

    /// A valid environment with a few random edits: loading may fail and validation may report
    /// errors, but nothing panics and every error is complete.
    #[test]
    fn validate_never_panics_on_mutated_environments((flat, mutations, envelope) in edits()) {
        let mut doc = if flat { flat_seed() } else { seed() };
        let log: Vec<String> = mutations.iter().filter_map(|m| apply(&mut doc, m)).collect();
        let mut env = Environment::new();
        let docs = match (envelope, doc) {
            (Envelope::Array, doc) => vec![doc],
            (Envelope::ValueList, doc) => vec![json!({"value": doc})],
            (Envelope::OneByOne, Value::Array(items)) => items,
            (Envelope::OneByOne, doc) => vec![doc],
        };
        for doc in docs {
            if let Err(e) = env.add_value("mutated.json", doc) {
                let _ = e.to_string();
            }
        }
        validate_checked(&env).map_err(|e| {
            let seed = if flat { "flattened seed" } else { "seed" };
            TestCaseError::fail(format!("{e}\nafter these edits of the {seed}:\n  {}", log.join("\n  ")))
        })?;
    }
}

/// A port-range token as the docs define it: `N` or `A-B`, each 1–5 ASCII digits up to 65535,
/// A ≤ B. Written independently of [`PortRange::parse`].
fn naive_port_range(text: &str) -> Option<(u16, u16)> {
    let number = |s: &str| -> Option<u16> {
        if s.is_empty() || s.len() > 5 || !s.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        u16::try_from(s.parse::<u32>().ok()?).ok()
    };
    let (low, high) = match text.find('-') {
        Some(i) => (number(&text[..i])?, number(&text[i + 1..])?),
        None => (number(text)?, number(text)?),
    };
    (low <= high).then_some((low, high))
}

/// Strings shaped like ids: segments from the id grammar, with empty and odd ones.
fn id_like() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        select(vec![
            "subscriptions",
            "SUBSCRIPTIONS",
            "sub1",
            "resourceGroups",
            "resourcegroups",
            "rg1",
            "providers",
            "Microsoft.Network",
            "networkSecurityGroups",
            "nsg1",
            "securityRules",
            "r1",
            "",
            " ",
            "ü",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z0-9._/-]{0,6}",
    ];
    (
        any::<bool>(),
        prop::collection::vec(segment, 0..12),
        any::<bool>(),
    )
        .prop_map(|(lead, segments, trail)| {
            let mut text = segments.join("/");
            if lead {
                text.insert(0, '/');
            }
            if trail {
                text.push('/');
            }
            text
        })
}

proptest! {
    #![proptest_config(proptest_config(2048))]

    /// `PortRange::parse` never panics, and accepts exactly the tokens the docs allow.
    #[test]
    fn port_range_parse_never_panics(
        text in prop_oneof![any::<String>(), "[0-9-]{0,13}", "[0-9]{1,6}-[0-9]{1,6}", "[ +0-9-]{0,8}"],
    ) {
        let parsed = PortRange::parse(&text);
        prop_assert_eq!(parsed.map(|r| (r.low, r.high)), naive_port_range(&text), "{:?}", text);
    }

    /// `AddressToken::parse` never panics; networks it returns are canonical, tags are
    /// tag-shaped, and the canonical form it suggests for a CIDR with host bits parses.
    #[test]
    fn address_token_parse_never_panics(
        text in prop_oneof![
            any::<String>(),
            "[0-9a-fA-F:./%*]{0,40}",
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}/[0-9]{1,2}",
            "[0-9a-f]{0,4}(:[0-9a-f]{0,4}){1,8}(/[0-9]{1,3})?",
            "[A-Za-z][A-Za-z0-9._-]{0,20}",
        ],
    ) {
        match AddressToken::parse(&text) {
            Ok(AddressToken::Any) => prop_assert_eq!(text.as_str(), "*"),
            Ok(AddressToken::Net(net)) => prop_assert_eq!(net.trunc(), net, "{:?}", text),
            Ok(AddressToken::Tag(tag)) => {
                prop_assert_eq!(&tag, &text);
                prop_assert!(!text.contains(['/', ':', ' ']), "{:?}", text);
            }
            Err(AddressTokenError::NotCanonical(net)) => {
                prop_assert_eq!(net.trunc(), net);
                prop_assert_eq!(
                    AddressToken::parse(&net.to_string()),
                    Ok(AddressToken::Net(net)),
                    "the suggested form of {:?}", text
                );
            }
            Err(AddressTokenError::Malformed) => {}
        }
    }

    /// `ResourceId::parse` never panics; ids it accepts compare case-insensitively, and their
    /// accessors, children and parents work.
    #[test]
    fn resource_id_parse_never_panics(text in prop_oneof![any::<String>(), id_like()]) {
        if let Ok(id) = ResourceId::parse(&text) {
            prop_assert_eq!(id.as_str(), text.as_str());
            prop_assert!(!id.name().is_empty(), "{:?}", text);
            let _ = (id.subscription(), id.resource_group(), id.namespace(), id.resource_type());
            let lower = ResourceId::parse(&text.to_ascii_lowercase());
            prop_assert_eq!(lower.as_ref(), Ok(&id), "{:?}", text);
            let child = id.child("securityRules", "r1");
            prop_assert_eq!(child.parent(), Some(id.clone()), "{:?}", text);
            if let Some(parent) = id.parent() {
                prop_assert!(ResourceId::parse(parent.as_str()).is_ok(), "parent of {:?}", text);
            }
        }
    }
}

/// Nesting far deeper than any ARM document is refused, not a stack overflow.
#[test]
fn deeply_nested_text_is_an_error() {
    for depth in [200, 100_000] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let mut env = Environment::new();
        assert!(env.add_json("deep.json", &text).is_err());
        let text = format!(
            r#"{{"type": "Microsoft.Network/networkSecurityGroups", "id": "x", "properties": {{"securityRules": {}{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(env.add_json("deep.json", &text).is_err());
    }
}

/// Every error names its document, also when the document lacks an id: by its name, or by
/// whatever id text it has. (The smallest inputs the mutation test above shrinks to.)
#[test]
fn errors_name_documents_without_an_id() {
    let documents = [
        // A standalone rule with a name but no id.
        json!({"type": "Microsoft.Network/networkSecurityGroups/securityRules", "name": "r1",
               "properties": {"protocol": "Tcp", "access": "Allow", "direction": "Inbound",
                              "priority": 100, "sourcePortRange": "*", "destinationPortRange": "*",
                              "sourceAddressPrefix": "*", "destinationAddressPrefix": "*"}}),
        // A standalone subnet with a name but no id.
        json!({"type": "Microsoft.Network/virtualNetworks/subnets", "name": "subnet1",
               "properties": {"addressPrefix": "10.0.0.0/24"}}),
        // A resource whose id is not an ARM id, and no name.
        json!({"type": "Microsoft.Network/applicationSecurityGroups", "id": "asg1", "properties": {}}),
        // A resource with neither.
        json!({"type": "Microsoft.Network/applicationSecurityGroups", "properties": {}}),
    ];
    let mut unnamed = Vec::new();
    for document in documents {
        let mut env = Environment::new();
        env.add_value("doc.json", document.clone())
            .expect("the document has a type, so it loads");
        let errors = validate(&env, &TestTags).expect_err("the document has no valid id");
        unnamed.extend(
            errors
                .into_iter()
                .filter(|e| e.resource.is_empty())
                .map(|e| format!("{document}\n    -> {e:?}")),
        );
    }
    assert!(
        unnamed.is_empty(),
        "errors with an empty resource:\n{}",
        unnamed.join("\n")
    );
}

//! Names that both formats write: rule labels, MAC addresses, upper-cased resource ids and the
//! stable UUID that stands in for a missing `resourceGuid`.

use super::MAX_RULE_NAME_CHARS;
use nsg_model::rule::RuleKind;
use nsg_model::ResourceId;

/// The rule as flow logs name it: `UserRule_NAME` for custom rules, `DefaultRule_NAME` for the
/// default ones. Names longer than 65 characters are truncated to 65 characters.
pub fn rule_label(kind: RuleKind, name: &str) -> String {
    let prefix = match kind {
        RuleKind::Custom => "UserRule_",
        RuleKind::Default => "DefaultRule_",
    };
    let truncated = match name.char_indices().nth(MAX_RULE_NAME_CHARS) {
        Some((end, _)) => &name[..end],
        None => name,
    };
    format!("{prefix}{truncated}")
}

/// A MAC address as flow logs write it: 12 upper-case hex digits without separators
/// (`000D3A1BC721`). Accepts `00-0D-3A-1B-C7-21`, `00:0d:3a:1b:c7:21` and `000d3a1bc721` (any
/// case); the separator, if any, must be the same throughout and sit between every pair of
/// digits. Anything else is `None`.
pub fn normalise_mac(mac: &str) -> Option<String> {
    let bytes = mac.as_bytes();
    let digits: Vec<u8> = match bytes.len() {
        12 => bytes.to_vec(),
        17 => {
            let sep = bytes[2];
            if sep != b'-' && sep != b':' {
                return None;
            }
            let mut digits = Vec::with_capacity(12);
            for (i, &b) in bytes.iter().enumerate() {
                if i % 3 == 2 {
                    if b != sep {
                        return None;
                    }
                } else {
                    digits.push(b);
                }
            }
            digits
        }
        _ => return None,
    };
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(
        digits
            .iter()
            .map(|b| char::from(b.to_ascii_uppercase()))
            .collect(),
    )
}

/// The `resourceId` of an NSG's records: its id, upper-cased, without a trailing `/`.
pub fn record_resource_id(nsg: &ResourceId) -> String {
    nsg.as_str().trim_end_matches('/').to_uppercase()
}

/// The `systemId` written for an NSG whose `resourceGuid` is unknown: a version 8 UUID (RFC 9562)
/// from the 128-bit FNV-1a hash of [`record_resource_id`], lower-case, `8-4-4-4-12`. The same for
/// every spelling of the id, and stable across runs and platforms.
pub fn derived_system_id(nsg: &ResourceId) -> String {
    uuid_from_name(&record_resource_id(nsg))
}

pub(super) fn uuid_from_name(name: &str) -> String {
    const FNV128_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const FNV128_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = FNV128_OFFSET;
    for &b in name.as_bytes() {
        hash ^= u128::from(b);
        hash = hash.wrapping_mul(FNV128_PRIME);
    }
    let mut bytes = hash.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10xx
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Whether `s` is a UUID: `8-4-4-4-12` hex digits, either case.
pub(super) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NSG: &str = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg1";

    #[test]
    fn macs_are_normalised() {
        for mac in [
            "00-0D-3A-1B-C7-21",
            "00:0d:3a:1b:c7:21",
            "000D3A1BC721",
            "000d3a1bc721",
            "00-0d-3A-1b-C7-21",
        ] {
            assert_eq!(normalise_mac(mac).as_deref(), Some("000D3A1BC721"), "{mac}");
        }
    }

    #[test]
    fn bad_macs_are_rejected() {
        for mac in [
            "",
            "00-0D-3A",
            "000D3A1BC72",
            "000D3A1BC7211",
            "00-0D-3A-1B-C7-2G",
            "00-0D:3A-1B-C7-21",
            "00.0D.3A.1B.C7.21",
            "000D.3A1B.C721",
            "0-00D-3A-1B-C7-21",
            "00-0D-3A-1B-C7-21-",
            "00-0D-3A-1B-C7-2١", // non-ASCII digit
            "Z00D3A1BC721",
        ] {
            assert_eq!(normalise_mac(mac), None, "{mac:?}");
        }
    }

    #[test]
    fn rule_labels() {
        assert_eq!(
            rule_label(RuleKind::Custom, "default-allow-rdp"),
            "UserRule_default-allow-rdp"
        );
        assert_eq!(
            rule_label(RuleKind::Default, "DenyAllInBound"),
            "DefaultRule_DenyAllInBound"
        );
        let long = "a".repeat(80);
        assert_eq!(
            rule_label(RuleKind::Custom, &long),
            format!("UserRule_{}", "a".repeat(65))
        );
        let exact = "b".repeat(65);
        assert_eq!(
            rule_label(RuleKind::Default, &exact),
            format!("DefaultRule_{exact}")
        );
        // Truncation counts characters, not bytes.
        let wide = "é".repeat(70);
        assert_eq!(
            rule_label(RuleKind::Custom, &wide),
            format!("UserRule_{}", "é".repeat(65))
        );
    }

    #[test]
    fn derived_system_ids_are_stable_uuids() {
        let a = ResourceId::parse(NSG).expect("test id");
        let b = ResourceId::parse(&NSG.to_uppercase()).expect("test id");
        let c = ResourceId::parse(&format!("{NSG}/")).expect("test id");
        let id = derived_system_id(&a);
        assert!(is_uuid(&id), "{id}");
        assert_eq!(&id[14..15], "8", "version 8: {id}");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "variant: {id}"
        );
        assert_eq!(id, derived_system_id(&b));
        assert_eq!(id, derived_system_id(&c));
        let other = ResourceId::parse(&NSG.replace("nsg1", "nsg2")).expect("test id");
        assert_ne!(id, derived_system_id(&other));
        // Pinned: the value must not change between releases.
        assert_eq!(id, uuid_from_name(&NSG.to_uppercase()));
        assert_eq!(uuid_from_name(""), "6c62272e-07bb-8142-a2b8-21756295c58d");
    }
}

//! NIC addresses as Azure hands them out: a stable MAC per NIC, and dynamic private addresses
//! allocated from the subnet (the first free one from the fifth on).

use super::{all, items_at, list_object, properties, string_or_default};
use crate::error::ApiError;
use crate::request::Kind;
use nsg_model::ResourceId;
use nsg_store::{StoredResource, Tx};
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// A stable MAC address for a NIC, in Azure's `00-0D-3A-…` range, from its id.
pub(super) fn mac_address(id: &ResourceId) -> String {
    let key = id.as_str().to_ascii_lowercase();
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let b = hash.to_be_bytes();
    format!("00-0D-3A-{:02X}-{:02X}-{:02X}", b[0], b[1], b[2])
}

/// Dynamic private addresses, as Azure allocates them: the first free address of the subnet
/// from the fifth on (Azure reserves the first four and the last). A configuration keeps the
/// address it had; `Static` addresses are taken as given.
pub(super) fn allocate_addresses(
    tx: &Tx<'_>,
    id: &ResourceId,
    doc: &mut Map<String, Value>,
    existing: Option<&StoredResource>,
) -> Result<(), ApiError> {
    let Some(Value::Array(configs)) = properties(doc).get_mut("ipConfigurations") else {
        return Ok(());
    };
    for (i, config) in configs.iter_mut().enumerate() {
        let config = list_object(config, "properties.ipConfigurations", i)?;
        let name = config
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("ipconfig{}", i + 1));
        normalise_ip_configuration(id, &name, config);
        let p = properties(config);
        let method = string_or_default(p, "privateIPAllocationMethod", "Dynamic");
        let version = string_or_default(p, "privateIPAddressVersion", "IPv4");
        if method.eq_ignore_ascii_case("Static") && p.contains_key("privateIPAddress") {
            continue;
        }
        let subnet = p
            .get("subnet")
            .and_then(|s| s.get("id"))
            .and_then(Value::as_str)
            .and_then(|t| ResourceId::parse(t).ok());
        let Some(subnet) = subnet else {
            continue; // validation reports the missing subnet
        };
        let kept = existing.and_then(|e| {
            e.document
                .pointer("/properties/ipConfigurations")?
                .as_array()?
                .iter()
                .find_map(|c| {
                    let same_name = c.get("name")?.as_str()?.eq_ignore_ascii_case(&name);
                    let same_subnet = c
                        .pointer("/properties/subnet/id")?
                        .as_str()?
                        .eq_ignore_ascii_case(subnet.as_str());
                    (same_name && same_subnet)
                        .then(|| c.pointer("/properties/privateIPAddress").cloned())
                        .flatten()
                })
        });
        let address = match kept {
            Some(address) => address,
            None => json!(
                free_address(tx, id, &subnet, version.eq_ignore_ascii_case("IPv6"))?.to_string()
            ),
        };
        p.insert("privateIPAddress".into(), address);
    }
    Ok(())
}

fn normalise_ip_configuration(nic: &ResourceId, name: &str, config: &mut Map<String, Value>) {
    config.remove("etag");
    config.insert("name".into(), json!(name));
    config.insert(
        "id".into(),
        json!(nic.child("ipConfigurations", name).as_str()),
    );
    config.insert(
        "type".into(),
        json!("Microsoft.Network/networkInterfaces/ipConfigurations"),
    );
    properties(config).remove("provisioningState");
}

fn free_address(
    tx: &Tx<'_>,
    nic: &ResourceId,
    subnet: &ResourceId,
    v6: bool,
) -> Result<IpAddr, ApiError> {
    let missing = || {
        ApiError::bad_request(
            "InvalidResourceReference",
            format!("Resource {subnet} referenced by resource {nic} was not found."),
        )
    };
    let vnet = tx
        .get(&subnet.parent().ok_or_else(missing)?)?
        .ok_or_else(missing)?;
    let subnet_doc = vnet
        .document
        .pointer("/properties/subnets")
        .and_then(Value::as_array)
        .and_then(|subnets| {
            subnets.iter().find(|s| {
                s.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(subnet.name()))
            })
        });
    let subnet_doc = subnet_doc.ok_or_else(missing)?;
    let prefixes: Vec<ipnet::IpNet> = subnet_doc
        .pointer("/properties/addressPrefix")
        .into_iter()
        .chain(
            subnet_doc
                .pointer("/properties/addressPrefixes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )
        .filter_map(|p| p.as_str()?.parse().ok())
        .filter(|p: &ipnet::IpNet| p.addr().is_ipv6() == v6)
        .collect();
    let used = addresses_in_use(tx, nic, subnet)?;
    for prefix in prefixes {
        let (first, last) = match prefix {
            ipnet::IpNet::V4(n) => (
                u128::from(u32::from(n.network())),
                u128::from(u32::from(n.broadcast())),
            ),
            ipnet::IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
        };
        let mut candidate = first + 4;
        while candidate < last {
            let ip = if v6 {
                IpAddr::V6(candidate.into())
            } else {
                IpAddr::V4((candidate as u32).into())
            };
            if !used.contains(&ip) {
                return Ok(ip);
            }
            candidate += 1;
        }
    }
    Err(ApiError::bad_request(
        "SubnetIsFull",
        format!(
            "Subnet {subnet} has no free {} address left.",
            if v6 { "IPv6" } else { "IPv4" }
        ),
    ))
}

/// Private addresses of the subnet's IP configurations on NICs other than `except`.
fn addresses_in_use(
    tx: &Tx<'_>,
    except: &ResourceId,
    subnet: &ResourceId,
) -> Result<Vec<IpAddr>, ApiError> {
    let mut used = Vec::new();
    for nic in all(tx, Kind::NetworkInterface, except.subscription())? {
        if nic.id == *except {
            continue;
        }
        for config in items_at(&nic.document, "/properties/ipConfigurations") {
            let in_subnet = config
                .pointer("/properties/subnet/id")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(subnet.as_str()));
            let address = config
                .pointer("/properties/privateIPAddress")
                .and_then(Value::as_str)
                .and_then(|a| a.split('/').next()?.parse().ok());
            if let (true, Some(address)) = (in_subnet, address) {
                used.push(address);
            }
        }
    }
    Ok(used)
}

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::error::{run_checked, LabError};
use crate::netns::Netns;

/// The IPv4 gateway every guest routes through (Calico's choice: a link-local address that
/// never collides with guest addresses).
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The IPv6 gateway every guest routes through, present on each router-side interface.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_IFNAME_LEN: usize = 15;

/// Longest short namespace name; keeps `ip netns list` readable.
const MAX_SHORT_NAME_LEN: usize = 16;

/// Numbers the labs of this process, so that labs of parallel tests never share a name.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A throwaway set of network namespaces.
///
/// Every namespace it creates is deleted when the lab is dropped, also while a test panics.
/// Deleting a namespace destroys its veth interfaces, and with them the peer ends. (A socket
/// still open in a deleted namespace keeps the namespace itself alive, nameless, until closed.)
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    created: Mutex<Vec<Netns>>,
}

/// The router's end of a veth pair made by [`Lab::attach`] or
/// [`Lab::attach_to_bridge`](crate::Lab::attach_to_bridge).
#[derive(Clone, Debug)]
pub struct RouterSide {
    /// Interface name in the router namespace, e.g. "vm1" (at most 15 bytes).
    pub ifname: String,
    /// MAC address; the kernel picks a random one when `None`.
    pub mac: Option<[u8; 6]>,
}

impl RouterSide {
    pub fn new(ifname: impl Into<String>) -> Self {
        RouterSide {
            ifname: ifname.into(),
            mac: None,
        }
    }

    pub fn with_mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = Some(mac);
        self
    }
}

/// The guest's end of a veth pair made by [`Lab::attach`] or
/// [`Lab::attach_to_bridge`](crate::Lab::attach_to_bridge).
#[derive(Clone, Debug)]
pub struct GuestSide {
    /// Interface name in the guest namespace, usually "eth0" (at most 15 bytes).
    pub ifname: String,
    /// MAC address; the kernel picks a random one when `None`.
    pub mac: Option<[u8; 6]>,
    /// Addresses of the guest: host addresses (/32, /128) when routed; on a bridge, they take
    /// the prefix length of the bridge subnet they are in.
    pub addresses: Vec<IpAddr>,
}

impl GuestSide {
    pub fn new(ifname: impl Into<String>, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        GuestSide {
            ifname: ifname.into(),
            mac: None,
            addresses: addresses.into_iter().collect(),
        }
    }

    pub fn with_mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = Some(mac);
        self
    }
}

impl Lab {
    /// Checks that namespaces can be made here (root, `ip` installed) and starts an empty lab.
    pub fn new() -> Result<Lab, LabError> {
        let euid = rustix::process::geteuid().as_raw();
        if euid != 0 {
            return Err(LabError::NotRoot { euid });
        }
        match run_checked(Command::new("ip").arg("-V")) {
            Ok(_) => {}
            Err(LabError::Spawn { source, .. }) => {
                return Err(LabError::MissingProgram {
                    program: "ip",
                    source,
                })
            }
            Err(other) => return Err(other),
        }
        let lab_number = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        Ok(Lab {
            prefix: format!("nl{}-{lab_number}-", std::process::id()),
            created: Mutex::new(Vec::new()),
        })
    }

    /// The real name of this lab's namespace called `short` (whether or not it exists yet).
    pub fn namespace_name(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// Creates a namespace with `lo` up and IPv6 duplicate address detection off.
    pub fn namespace(&self, short: &str) -> Result<Netns, LabError> {
        check_short_name(short)?;
        let name = self.namespace_name(short);
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns::new(name);
        // Recorded before the rest of the setup, so that Drop removes it even if that fails.
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ns.clone());
        ns.ip(["link", "set", "lo", "up"])?;
        // DAD keeps new IPv6 addresses "tentative" (unusable) for a second or more; interfaces
        // created later inherit "default".
        ns.write_sysctl("net/ipv6/conf/all/accept_dad", "0")?;
        ns.write_sysctl("net/ipv6/conf/default/accept_dad", "0")?;
        Ok(ns)
    }

    /// Creates a namespace that forwards IPv4 and IPv6 between the guests attached to it.
    ///
    /// It owns [`GATEWAY_V4`] on `lo`: with proxy ARP alone it would not answer guests' ARP for
    /// the gateway, because the kernel proxies only addresses it has a route to through another
    /// interface, and a router has no default route. It is also the source address of ICMP
    /// errors it sends.
    pub fn router(&self, short: &str) -> Result<Netns, LabError> {
        let ns = self.namespace(short)?;
        ns.write_sysctl("net/ipv4/ip_forward", "1")?;
        ns.write_sysctl("net/ipv6/conf/all/forwarding", "1")?;
        // New namespaces copy the host's IPv4 settings; strict reverse-path filtering there
        // would drop probes with unusual source addresses before the firewall sees them.
        ns.write_sysctl("net/ipv4/conf/all/rp_filter", "0")?;
        ns.write_sysctl("net/ipv4/conf/default/rp_filter", "0")?;
        ns.ip(["address", "add", &format!("{GATEWAY_V4}/32"), "dev", "lo"])?;
        Ok(ns)
    }

    /// Connects `guest` to `router` with a veth pair, routed the way Calico connects a pod:
    /// the guest's addresses are host addresses (/32, /128) behind one gateway, so all its
    /// traffic, even to other guests of the same router, crosses the router's forward path.
    ///
    /// A guest is meant to be attached once (it gets default routes).
    pub fn attach(
        &self,
        router: &Netns,
        guest: &Netns,
        router_side: &RouterSide,
        guest_side: &GuestSide,
    ) -> Result<(), LabError> {
        create_veth(router, guest, router_side, guest_side)?;
        let (r_if, g_if) = (router_side.ifname.as_str(), guest_side.ifname.as_str());
        router.write_sysctl(&format!("net/ipv4/conf/{r_if}/proxy_arp"), "1")?;

        for address in &guest_side.addresses {
            let host_address = format!("{address}/{}", host_prefix_len(address));
            match address {
                IpAddr::V4(_) => guest.ip(["address", "add", &host_address, "dev", g_if])?,
                IpAddr::V6(_) => {
                    guest.ip(["address", "add", &host_address, "dev", g_if, "nodad"])?
                }
            }
        }
        router.ip(["link", "set", r_if, "up"])?;
        guest.ip(["link", "set", g_if, "up"])?;
        router.ip([
            "address",
            "add",
            &format!("{GATEWAY_V6}/64"),
            "dev",
            r_if,
            "nodad",
        ])?;

        // Routes need the links up.
        let gateway_v4 = GATEWAY_V4.to_string();
        let gateway_v6 = GATEWAY_V6.to_string();
        guest.ip(["route", "add", &gateway_v4, "dev", g_if, "scope", "link"])?;
        guest.ip(["route", "add", "default", "via", &gateway_v4, "dev", g_if])?;
        guest.ip([
            "-6",
            "route",
            "add",
            "default",
            "via",
            &gateway_v6,
            "dev",
            g_if,
        ])?;
        for address in &guest_side.addresses {
            let host_route = format!("{address}/{}", host_prefix_len(address));
            router.ip(["route", "add", &host_route, "dev", r_if])?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let created = std::mem::take(
            self.created
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for ns in created.iter().rev() {
            if let Err(err) = run_checked(Command::new("ip").args(["netns", "delete", ns.name()])) {
                // Drop cannot fail; say so loudly so a leak is visible in the test output.
                eprintln!("nsg-netlab: could not delete network namespace {ns}: {err}");
            }
        }
    }
}

/// Creates the veth pair `router_side` (in `router`) -- `guest_side` (in `guest`), both down,
/// with their names and MACs and IPv6 DAD off; addresses and routes are the caller's business.
pub(crate) fn create_veth(
    router: &Netns,
    guest: &Netns,
    router_side: &RouterSide,
    guest_side: &GuestSide,
) -> Result<(), LabError> {
    check_ifname(&router_side.ifname)?;
    check_ifname(&guest_side.ifname)?;
    let (r_if, g_if) = (router_side.ifname.as_str(), guest_side.ifname.as_str());

    // Both ends are created directly in their namespaces, so the names can never clash
    // with interfaces of the host or of other labs.
    let mut create: Vec<String> = vec!["link".into(), "add".into(), "name".into(), r_if.into()];
    if let Some(mac) = router_side.mac {
        create.extend(["address".into(), format_mac(mac)]);
    }
    create.extend(["type", "veth", "peer", "name", g_if].map(String::from));
    if let Some(mac) = guest_side.mac {
        create.extend(["address".into(), format_mac(mac)]);
    }
    create.extend(["netns".into(), guest.name().into()]);
    router.ip(&create)?;

    for (ns, ifname) in [(router, r_if), (guest, g_if)] {
        ns.write_sysctl(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0")?;
    }
    Ok(())
}

fn host_prefix_len(address: &IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

pub(crate) fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

fn check_short_name(short: &str) -> Result<(), LabError> {
    let reason = if short.is_empty() || short.len() > MAX_SHORT_NAME_LEN {
        "must be 1 to 16 bytes long"
    } else if !short
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        "may contain only ASCII letters, digits, '-' and '_'"
    } else {
        return Ok(());
    };
    Err(LabError::InvalidName {
        what: "namespace name",
        name: short.to_owned(),
        reason,
    })
}

pub(crate) fn check_ifname(ifname: &str) -> Result<(), LabError> {
    // The kernel's own rules (dev_valid_name), checked here for a clearer message.
    let reason = if ifname.is_empty() || ifname.len() > MAX_IFNAME_LEN {
        "must be 1 to 15 bytes long"
    } else if ifname == "." || ifname == ".." {
        "is reserved"
    } else if ifname
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        "may not contain '/', ':' or whitespace"
    } else {
        return Ok(());
    };
    Err(LabError::InvalidName {
        what: "interface name",
        name: ifname.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_mac_addresses_like_ip_expects() {
        assert_eq!(
            format_mac([0xee, 0xee, 0, 1, 0x0a, 0xff]),
            "ee:ee:00:01:0a:ff"
        );
    }

    #[test]
    fn rejects_interface_names_the_kernel_would_reject() {
        assert!(check_ifname("vm1").is_ok());
        assert!(check_ifname("fifteen-chars-x").is_ok());
        assert!(check_ifname("sixteen-chars-xx").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("a b").is_err());
    }

    #[test]
    fn rejects_namespace_names_that_are_not_plain_words() {
        assert!(check_short_name("internet").is_ok());
        assert!(check_short_name("../etc").is_err());
        assert!(check_short_name("").is_err());
        assert!(check_short_name("a-very-long-short-name").is_err());
    }
}

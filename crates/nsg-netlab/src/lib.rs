//! Network lab for kernel tests.
//!
//! Builds throwaway topologies of Linux network namespaces joined by veth pairs, for
//! end-to-end tests of the nftables firewall, and sends and observes real traffic in them.
//! Needs root and the `ip` and `ping` programs (iproute2, iputils).
//!
//! The topology is routed the way Calico wires pods: each guest namespace hangs off a router
//! namespace by its own veth pair, holds host addresses (/32, /128) and reaches everything
//! through the gateways [`GATEWAY_V4`] and [`GATEWAY_V6`]. So traffic between two guests
//! always crosses the router's forward path, where the firewall under test sits.
//!
//! Guests can also be bridged, the way libvirt, Docker and LXD attach them
//! ([`Lab::bridge`], [`Lab::attach_to_bridge`]): guests on one bridge share a subnet and reach
//! each other on-link, and reach everything else through the bridge's addresses on the router.
//! [`FrameSender`] and [`Capture::open_frames`] send and observe whole Ethernet frames there,
//! for layer-2 probes such as spoofed ARP replies (see [`packet`] for builders).
//!
//! ```no_run
//! use std::time::Duration;
//! use nsg_netlab::{ping, GuestSide, Lab, RouterSide};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lab = Lab::new()?;
//! let router = lab.router("host")?;
//! let a = lab.namespace("a")?;
//! let b = lab.namespace("b")?;
//! lab.attach(&router, &a, &RouterSide::new("vm1"), &GuestSide::new("eth0", ["10.0.0.1".parse()?]))?;
//! lab.attach(&router, &b, &RouterSide::new("vm2"), &GuestSide::new("eth0", ["10.0.0.2".parse()?]))?;
//! assert!(ping(&a, "10.0.0.2".parse()?, 1, Duration::from_secs(2))?);
//! # Ok(())
//! # } // the namespaces are deleted here
//! ```
//!
//! Every traffic helper is bounded by the timeout it is given, and every background thread
//! stops when its owner is dropped.

mod azurite;
mod bridge;
mod error;
mod http;
mod lab;
mod netns;
pub mod packet;
mod ping;
mod raw;
mod tcp;
mod udp;

pub use azurite::{Azurite, ACCOUNT as AZURITE_ACCOUNT, ACCOUNT_KEY as AZURITE_ACCOUNT_KEY};
pub use bridge::Bridge;
pub use error::LabError;
pub use http::{http_request, tls_client, HttpResponse};
pub use lab::{GuestSide, Lab, RouterSide, GATEWAY_V4, GATEWAY_V6};
pub use netns::{in_namespace, Netns};
pub use packet::{FiveTuple, IcmpError};
pub use ping::ping;
pub use raw::{Capture, FrameSender, RawSender};
pub use tcp::{echo_roundtrip, tcp_connect, tcp_listen, EchoServer};
pub use udp::{udp_bind, udp_exchange, ReceivedDatagram, UdpEchoServer, UdpExchange};

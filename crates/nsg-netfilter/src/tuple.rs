use std::net::IpAddr;

/// One direction of a flow: what conntrack keys a connection by, and what an nflog packet's
/// headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, …).
    pub protocol: u8,
    pub transport: Transport,
}

/// What a [`Tuple`] knows beyond the addresses and the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP, UDP, SCTP, DCCP and UDP-Lite ports.
    Ports { src: u16, dst: u16 },
    /// ICMP or ICMPv6. `id` is the echo identifier; 0 for messages that have none.
    Icmp { icmp_type: u8, code: u8, id: u16 },
    /// Neither: another protocol, or (in an nflog packet) a header beyond the copied bytes.
    None,
}

//! Datagrams into netlink messages, and the attribute values netlink-packet-netfilter leaves
//! opaque.

use netlink_packet_core::{NetlinkMessage, Nla};
use netlink_packet_netfilter::NetfilterMessage;

use crate::error::{Error, Result};

/// Netlink aligns each message of a datagram to 4 bytes (NLMSG_ALIGN).
const MESSAGE_ALIGNMENT: usize = 4;

/// The messages of one datagram, in order; the first malformed one ends the iteration.
/// `what` names them in errors.
pub(crate) fn messages<'a>(
    datagram: &'a [u8],
    what: &'static str,
) -> impl Iterator<Item = Result<NetlinkMessage<NetfilterMessage>>> + 'a {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // Checks that the length field is at least a header and at most what is left.
        match NetlinkMessage::<NetfilterMessage>::deserialize(rest) {
            Ok(message) => {
                let length = message.header.length as usize;
                let padded = length.div_ceil(MESSAGE_ALIGNMENT) * MESSAGE_ALIGNMENT;
                rest = rest.get(padded..).unwrap_or_default();
                Some(Ok(message))
            }
            Err(err) => {
                rest = &[];
                Some(Err(Error::malformed(what, err)))
            }
        }
    })
}

/// The value of an attribute as the kernel sent it. netlink-packet-netfilter 0.4 parses some
/// attributes into types whose fields are private (`DefaultNla` for the attributes it does not
/// know, nflog's `PacketHdr` and `TimeStamp`); writing them back with the public
/// [`Nla::emit_value`] is the way it offers to read them.
pub(crate) fn value_of(attribute: &impl Nla) -> Vec<u8> {
    let mut value = vec![0; attribute.value_len()];
    attribute.emit_value(&mut value);
    value
}

//! The ClassBench filter format: [`parse`] and [`to_classbench`].
//!
//! One filter per line, the first line being the highest priority:
//!
//! ```text
//! @198.151.163.28/32  12.33.128.0/20  0 : 65535  1521 : 1521  0x06/0xFF  0x0000/0x0000
//! ```
//!
//! (fields separated by tabs in the original files), that is `@src/len dst/len sport_lo : sport_hi dport_lo : dport_hi proto/mask flags/mask`.
//!
//! The parser is tolerant where real files vary and strict where a mistake would change meaning:
//!
//! * fields may be separated by any whitespace (tabs, spaces, several of them), and whitespace
//!   is allowed around the `:` of a port range and around the `/` of a prefix or a value/mask
//!   pair (`0:65535`, `0 :65535`, `0 : 65535` are all accepted);
//! * whitespace may follow the leading `@`;
//! * blank lines and lines whose first non-blank character is `#` are skipped (they still count
//!   for line numbers, which are 1-based lines of the input);
//! * the `flags/mask` field may be absent (flags become `(0, 0)`); anything after it is an extra
//!   field and is ignored. A sixth field that neither contains `/` nor starts with `0x` is taken
//!   for such an extra field too, with flags `(0, 0)`;
//! * prefixes with host bits set (`10.1.2.3/8`, which some ClassBench files contain) are accepted
//!   and truncated to their network (`10.0.0.0/8`), so [`Rule`]s are always canonical;
//! * numbers in `proto/mask` and `flags/mask` are hexadecimal with a `0x` prefix, or decimal
//!   without one; ports are decimal;
//! * the protocol mask must be `0xFF` (exact protocol) or `0x00` (any protocol: the value is
//!   then ignored); any other mask is an error, as are a port range with `lo > hi`, a value out
//!   of range, a prefix length above 32 and a missing field.
//!
//! [`parse`] never panics, whatever the input.

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::rule::Rule;

/// The field of a line that an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The line as a whole (the leading `@`).
    Rule,
    /// The source prefix.
    SourcePrefix,
    /// The destination prefix.
    DestinationPrefix,
    /// The source port range.
    SourcePorts,
    /// The destination port range.
    DestinationPorts,
    /// The `proto/mask` pair.
    Protocol,
    /// The `flags/mask` pair.
    Flags,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Rule => "rule",
            Field::SourcePrefix => "source prefix",
            Field::DestinationPrefix => "destination prefix",
            Field::SourcePorts => "source port range",
            Field::DestinationPorts => "destination port range",
            Field::Protocol => "protocol",
            Field::Flags => "flags",
        })
    }
}

/// What went wrong, for callers and tests that match on it; [`ParseError::message`] says it in
/// words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The line does not start with `@`.
    MissingAt,
    /// The line ends before this field.
    MissingField,
    /// A `/` (prefix, value/mask) or `:` (port range) is missing, or one of its sides is empty.
    MissingSeparator,
    /// The address is not a dotted-quad IPv4 address.
    InvalidAddress,
    /// The prefix length is not a number from 0 to 32.
    InvalidPrefixLength,
    /// A port is not a decimal number from 0 to 65535.
    InvalidPort,
    /// A port range has `lo > hi`.
    InvertedRange,
    /// A protocol or flags value or mask is not a number.
    InvalidNumber,
    /// A protocol value or mask above `0xFF`, or a flags value or mask above `0xFFFF`.
    ValueTooLarge,
    /// A protocol mask other than `0x00` and `0xFF`.
    InvalidProtocolMask,
}

/// A line of a ClassBench file that could not be parsed.
///
/// Displays as `line 12: destination port range: 80 : 70 has low > high`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {field}: {message}")]
pub struct ParseError {
    /// 1-based line number in the input (blank and comment lines count).
    pub line: usize,
    /// The field the error is in.
    pub field: Field,
    /// The kind of error.
    pub kind: ErrorKind,
    /// A human-readable description, quoting the offending text.
    pub message: String,
}

/// Parses a ClassBench filter file: one [`Rule`] per non-blank, non-comment line, in file order
/// (first = highest priority). See the [module documentation](self) for what is accepted.
pub fn parse(text: &str) -> Result<Vec<Rule>, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let rule = parse_line(line).map_err(|(field, kind, message)| ParseError {
            line: i + 1,
            field,
            kind,
            message,
        })?;
        rules.push(rule);
    }
    Ok(rules)
}

/// Writes rules in the ClassBench filter format, one per line (tab-separated, `lo : hi` port
/// ranges, `0xPP/0xMM` protocol, `0xFFFF/0xFFFF` flags, each line ending in `\n`).
///
/// `parse(&to_classbench(rules))` gives back `rules` whenever their prefixes are canonical (as all
/// parsed and generated ones are); a non-canonical prefix comes back truncated.
pub fn to_classbench(rules: &[Rule]) -> String {
    let mut out = String::with_capacity(rules.len() * 72);
    for r in rules {
        let (proto, mask) = match r.protocol {
            Some(p) => (p, 0xFF),
            None => (0, 0),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "@{}\t{}\t{} : {}\t{} : {}\t0x{:02X}/0x{:02X}\t0x{:04X}/0x{:04X}",
            r.src,
            r.dst,
            r.src_ports.0,
            r.src_ports.1,
            r.dst_ports.0,
            r.dst_ports.1,
            proto,
            mask,
            r.flags.0,
            r.flags.1,
        );
    }
    out
}

type LineError = (Field, ErrorKind, String);

fn err<T>(field: Field, kind: ErrorKind, message: impl Into<String>) -> Result<T, LineError> {
    Err((field, kind, message.into()))
}

/// The whitespace-separated tokens of a line, with a cursor.
struct Tokens<'a> {
    toks: Vec<&'a str>,
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.toks.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<&'a str> {
        let t = self.peek()?;
        self.pos += 1;
        Some(t)
    }

    /// Reads `a<sep>b` where whitespace may surround `sep`: `a<sep>b`, `a <sep>b`, `a<sep> b`,
    /// `a <sep> b`.
    fn pair(
        &mut self,
        field: Field,
        sep: char,
        what: &str,
    ) -> Result<(&'a str, &'a str), LineError> {
        let Some(first) = self.next() else {
            return err(field, ErrorKind::MissingField, format!("missing {what}"));
        };
        let (a, b) = match first.split_once(sep) {
            Some((a, "")) => match self.next() {
                Some(b) => (a, b),
                None => (a, ""),
            },
            Some((a, b)) => (a, b),
            None => match self.peek() {
                Some(n) if n.starts_with(sep) => {
                    self.pos += 1;
                    let rest = &n[sep.len_utf8()..];
                    if rest.is_empty() {
                        (first, self.next().unwrap_or(""))
                    } else {
                        (first, rest)
                    }
                }
                _ => {
                    return err(
                        field,
                        ErrorKind::MissingSeparator,
                        format!("expected {what}, found {first:?} without '{sep}'"),
                    )
                }
            },
        };
        if a.is_empty() || b.is_empty() {
            let shown = format!("{a}{sep}{b}");
            return err(
                field,
                ErrorKind::MissingSeparator,
                format!("expected {what}, found {shown:?} with an empty side"),
            );
        }
        Ok((a, b))
    }
}

fn parse_line(line: &str) -> Result<Rule, LineError> {
    let Some(body) = line.strip_prefix('@') else {
        let shown: String = line.chars().take(20).collect();
        return err(
            Field::Rule,
            ErrorKind::MissingAt,
            format!("expected '@' at the start of a rule, found {shown:?}"),
        );
    };
    let mut t = Tokens {
        toks: body.split_whitespace().collect(),
        pos: 0,
    };
    let src = prefix(&mut t, Field::SourcePrefix)?;
    let dst = prefix(&mut t, Field::DestinationPrefix)?;
    let src_ports = port_range(&mut t, Field::SourcePorts)?;
    let dst_ports = port_range(&mut t, Field::DestinationPorts)?;
    let protocol = protocol(&mut t)?;
    let flags = match t.peek() {
        Some(tok) if tok.contains('/') || has_hex_prefix(tok) => flags(&mut t)?,
        // Absent, or an extra field in place of the flags.
        _ => (0, 0),
    };
    // Anything left is an extra field; ignored.
    Ok(Rule {
        src,
        dst,
        src_ports,
        dst_ports,
        protocol,
        flags,
    })
}

fn prefix(t: &mut Tokens<'_>, field: Field) -> Result<Ipv4Net, LineError> {
    let (addr, len) = t.pair(field, '/', "address/length")?;
    let Ok(addr) = addr.parse::<Ipv4Addr>() else {
        return err(
            field,
            ErrorKind::InvalidAddress,
            format!("{addr:?} is not an IPv4 address"),
        );
    };
    let len = match len.parse::<u8>() {
        Ok(l) if l <= 32 => l,
        _ => {
            return err(
                field,
                ErrorKind::InvalidPrefixLength,
                format!("prefix length {len:?} is not a number from 0 to 32"),
            )
        }
    };
    // Cannot fail for len <= 32; the fallback keeps the no-panic promise regardless.
    let net = Ipv4Net::new(addr, len).unwrap_or_default();
    Ok(net.trunc())
}

fn port_range(t: &mut Tokens<'_>, field: Field) -> Result<(u16, u16), LineError> {
    let (lo, hi) = t.pair(field, ':', "lo : hi")?;
    let lo = port(lo, field)?;
    let hi = port(hi, field)?;
    if lo > hi {
        return err(
            field,
            ErrorKind::InvertedRange,
            format!("{lo} : {hi} has low > high"),
        );
    }
    Ok((lo, hi))
}

fn port(s: &str, field: Field) -> Result<u16, LineError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(p) = s.parse::<u16>() {
            return Ok(p);
        }
    }
    err(
        field,
        ErrorKind::InvalidPort,
        format!("port {s:?} is not a number from 0 to 65535"),
    )
}

fn protocol(t: &mut Tokens<'_>) -> Result<Option<u8>, LineError> {
    let field = Field::Protocol;
    let (value, mask) = t.pair(field, '/', "protocol/mask")?;
    let value = number(value, field, 0xFF)?;
    let mask = number(mask, field, 0xFF)?;
    match mask {
        0xFF => Ok(Some(value as u8)),
        0x00 => Ok(None),
        m => err(
            field,
            ErrorKind::InvalidProtocolMask,
            format!("mask 0x{m:02X} is neither 0xFF (exact protocol) nor 0x00 (any protocol)"),
        ),
    }
}

fn flags(t: &mut Tokens<'_>) -> Result<(u16, u16), LineError> {
    let field = Field::Flags;
    let (value, mask) = t.pair(field, '/', "flags/mask")?;
    let value = number(value, field, 0xFFFF)?;
    let mask = number(mask, field, 0xFFFF)?;
    Ok((value as u16, mask as u16))
}

fn has_hex_prefix(s: &str) -> bool {
    s.starts_with("0x") || s.starts_with("0X")
}

/// `0x`-prefixed hexadecimal or plain decimal, at most `max`.
fn number(s: &str, field: Field, max: u32) -> Result<u32, LineError> {
    let (digits, radix) = match s.get(..2) {
        Some("0x" | "0X") => (&s[2..], 16),
        _ => (s, 10),
    };
    let valid = !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
    let parsed = if valid {
        // Leading zeros are fine; too many digits overflow u32 and are reported as too large.
        u32::from_str_radix(digits, radix).ok()
    } else {
        None
    };
    match parsed {
        Some(v) if v <= max => Ok(v),
        Some(_) => err(
            field,
            ErrorKind::ValueTooLarge,
            format!("{s} is above 0x{max:X}"),
        ),
        None if valid => err(
            field,
            ErrorKind::ValueTooLarge,
            format!("{s} is above 0x{max:X}"),
        ),
        None => err(
            field,
            ErrorKind::InvalidNumber,
            format!("{s:?} is not a number (0x-prefixed hexadecimal or decimal)"),
        ),
    }
}

//! Attribute values between text and wire bytes, by dictionary type.
//!
//! Error reasons describe the expected form and never repeat the text they
//! were given: it may come from a configuration file that also holds
//! secrets, and it ends up in logs.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{AttrDef, AttrType};

/// Encodes `text` as the value of `def`, with an RFC 2868 tag if given.
pub(super) fn parse(def: &AttrDef, text: &str, tag: Option<u8>) -> Result<Vec<u8>, String> {
    let number = |max: u64, what: &str| -> Result<u64, String> {
        let n = def.value_by_name(text).or_else(|| text.parse::<u64>().ok().filter(|n| *n <= max));
        n.filter(|n| *n <= max).ok_or_else(|| {
            let names = if def.values.is_empty() { "" } else { " or one of its VALUE names" };
            format!("{what} must be a decimal number in 0..={max}{names}")
        })
    };
    let mut out = match def.typ {
        AttrType::String => text.as_bytes().to_vec(),
        AttrType::Octets => match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(h) => hex::decode(h).map_err(|_| "octets written as 0x need pairs of hex digits".to_owned())?,
            // As FreeRADIUS does: text without 0x is taken as its bytes
            // (`Class = corp-admins`).
            None => text.as_bytes().to_vec(),
        },
        AttrType::Integer if def.flags.has_tag => {
            // RFC 2868 §3: the tag takes the first octet, 24 bits remain.
            let n = number(0xff_ffff, "a tagged integer")? as u32;
            let mut b = n.to_be_bytes();
            b[0] = tag.unwrap_or(0);
            return Ok(b.to_vec());
        }
        AttrType::Integer => (number(u64::from(u32::MAX), "integer")? as u32).to_be_bytes().to_vec(),
        AttrType::Byte => vec![number(u64::from(u8::MAX), "byte")? as u8],
        AttrType::Short => (number(u64::from(u16::MAX), "short")? as u16).to_be_bytes().to_vec(),
        AttrType::Integer64 => number(u64::MAX, "integer64")?.to_be_bytes().to_vec(),
        AttrType::Date => {
            let n = text.parse::<u32>().map_err(|_| "date must be Unix seconds in 0..=4294967295".to_owned())?;
            n.to_be_bytes().to_vec()
        }
        AttrType::IpAddr => {
            let a: Ipv4Addr = text.parse().map_err(|_| "ipaddr must be a dotted-quad IPv4 address".to_owned())?;
            a.octets().to_vec()
        }
        AttrType::Ipv6Addr => {
            let a: Ipv6Addr = text.parse().map_err(|_| "ipv6addr must be an IPv6 address".to_owned())?;
            a.octets().to_vec()
        }
        AttrType::Ipv6Prefix => ipv6_prefix(text)?,
        AttrType::Ether => hex_groups(text, &[':', '-'], 6, 1)
            .ok_or_else(|| "ether must be six hex pairs separated by ':' or '-'".to_owned())?,
        AttrType::Ifid => hex_groups(text, &[':'], 4, 2)
            .ok_or_else(|| "ifid must be four groups of four hex digits separated by ':'".to_owned())?,
    };
    if def.flags.has_tag {
        // RFC 2868 §3: a first octet of 0x01..=0x1F is a tag; an untagged
        // value that starts with such an octet needs a zero tag in front.
        match tag {
            Some(t) if t > 0 => out.insert(0, t),
            _ if out.first().is_some_and(|b| *b <= 0x1f) => out.insert(0, 0),
            _ => {}
        }
    }
    Ok(out)
}

/// `addr/len` to the RFC 3162 §2.3 form with the shortest prefix field.
fn ipv6_prefix(text: &str) -> Result<Vec<u8>, String> {
    let bad = || "ipv6prefix must be an IPv6 address, '/', and a length in 0..=128".to_owned();
    let (addr, len) = text.split_once('/').ok_or_else(bad)?;
    let addr: Ipv6Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 128).ok_or_else(bad)?;
    let bits = u128::from(addr);
    if len < 128 && bits << len != 0 {
        return Err("ipv6prefix has bits set beyond its length".to_owned());
    }
    let mut out = vec![0, len];
    out.extend_from_slice(&addr.octets()[..usize::from(len).div_ceil(8)]);
    Ok(out)
}

/// `groups` groups of `bytes` octets in hex, separated by one of `seps`.
fn hex_groups(text: &str, seps: &[char], groups: usize, bytes: usize) -> Option<Vec<u8>> {
    let parts: Vec<&str> = text.split(|c| seps.contains(&c)).collect();
    if parts.len() != groups || parts.iter().any(|p| p.len() != 2 * bytes) {
        return None;
    }
    hex::decode(parts.concat()).ok()
}

/// `Name = value` for logs (see [`super::Dictionary::describe`]).
pub(super) fn describe(def: &AttrDef, name: &str, data: &[u8]) -> String {
    if def.flags.encrypt != 0 {
        return format!("{name} = <hidden, {} octets>", data.len());
    }
    let (tag, data) = match def.flags.has_tag {
        true => split_tag(def, data),
        false => (0, std::borrow::Cow::Borrowed(data)),
    };
    let name = if tag > 0 { format!("{name}:{tag}") } else { name.to_owned() };
    let text = format_value(def, &data).unwrap_or_else(|| format!("0x{}", hex::encode(&*data)));
    format!("{name} = {text}")
}

/// The tag of a tagged value and the value without it.
fn split_tag<'a>(def: &AttrDef, data: &'a [u8]) -> (u8, std::borrow::Cow<'a, [u8]>) {
    match (def.typ, data) {
        // The tag replaces the top octet of the integer.
        (AttrType::Integer, [t, rest @ ..]) if rest.len() == 3 => {
            (*t, std::borrow::Cow::Owned([&[0u8][..], rest].concat()))
        }
        (AttrType::Integer, _) => (0, std::borrow::Cow::Borrowed(data)),
        (_, [t, rest @ ..]) if *t <= 0x1f => (*t, std::borrow::Cow::Borrowed(rest)),
        _ => (0, std::borrow::Cow::Borrowed(data)),
    }
}

fn format_value(def: &AttrDef, data: &[u8]) -> Option<String> {
    let named = |n: u64| def.value_name(n).map_or_else(|| n.to_string(), str::to_owned);
    Some(match def.typ {
        AttrType::String => quoted(data),
        AttrType::Octets => format!("0x{}", hex::encode(data)),
        AttrType::Integer => named(u64::from(u32::from_be_bytes(data.try_into().ok()?))),
        AttrType::Byte => match data {
            [b] => named(u64::from(*b)),
            _ => return None,
        },
        AttrType::Short => named(u64::from(u16::from_be_bytes(data.try_into().ok()?))),
        AttrType::Integer64 => named(u64::from_be_bytes(data.try_into().ok()?)),
        AttrType::Date => u32::from_be_bytes(data.try_into().ok()?).to_string(),
        AttrType::IpAddr => Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?).to_string(),
        AttrType::Ipv6Addr => Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?).to_string(),
        AttrType::Ipv6Prefix => {
            let (&[_, len], prefix) = data.split_first_chunk::<2>()?;
            if len > 128 || prefix.len() > 16 {
                return None;
            }
            let mut full = [0u8; 16];
            full[..prefix.len()].copy_from_slice(prefix);
            format!("{}/{len}", Ipv6Addr::from(full))
        }
        AttrType::Ether => {
            let b = <[u8; 6]>::try_from(data).ok()?;
            b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
        }
        AttrType::Ifid => {
            let b = <[u8; 8]>::try_from(data).ok()?;
            b.chunks(2).map(hex::encode).collect::<Vec<_>>().join(":")
        }
    })
}

/// A double-quoted string with `"` and `\` escaped, control characters (and
/// the other characters below) and invalid UTF-8 as `\xNN` per octet, so
/// that no value can break or disguise a log line.
fn quoted(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() + 2);
    out.push('"');
    for chunk in data.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                // Controls, and the line separators and bidirectional
                // overrides that can make a log line read differently.
                c if c.is_control()
                    || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
                {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

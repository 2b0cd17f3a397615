//! FreeRADIUS-format attribute dictionaries.
//!
//! A dictionary names attributes and their values and gives them types, so
//! that configuration can say `Fortinet-Group-Name = vpn` and logs can show
//! `Filter-Id = "admins"` instead of octets. The format is FreeRADIUS v3's,
//! so that a site can drop in a vendor file it already has:
//!
//! ```text
//! # comment
//! ATTRIBUTE   Session-Timeout   27   integer
//! ATTRIBUTE   Tunnel-Password   69   string   has_tag,encrypt=2
//! VALUE       Service-Type      Login-User   1
//! VENDOR      Example           32473        [format=1,1]
//! BEGIN-VENDOR Example
//! ATTRIBUTE   Example-Role      1    string
//! END-VENDOR  Example
//! $INCLUDE    dictionary.other
//! ```
//!
//! Supported keywords: `ATTRIBUTE`, `VALUE`, `VENDOR`, `BEGIN-VENDOR`,
//! `END-VENDOR`, `BEGIN-TLV`, `END-TLV`, `$INCLUDE` and `$INCLUDE-` (an
//! include that may be missing). Anything else is an error naming the file
//! and line. Types kept with their meaning: `string`, `octets`, `integer`,
//! `ipaddr`, `ipv6addr`, `ipv6prefix`, `date`, `byte`, `short`,
//! `integer64`, `ether`, `ifid` (and the v4 spellings `uint8`, `uint16`,
//! `uint32`, `uint64`, `ipv4addr`). Every other FreeRADIUS type (`abinary`,
//! `tlv`, `struct`, `vsa`, `combo-ip`, `ipv4prefix`, `signed`, ...) is kept
//! as [`AttrType::Octets`], its declared name in [`AttrDef::type_name`].
//! What this crate cannot put on the wire is read and skipped, so that real
//! FreeRADIUS trees load: attributes inside `BEGIN-TLV` blocks, dotted
//! numbers (RFC 6929 extended attributes and TLV children) and vendor blocks
//! in the `format=Extended-Vendor-Specific-N` form; `VALUE`s of skipped
//! attributes are ignored.
//!
//! Attribute, vendor and value names are case-insensitive for lookup. A
//! later definition of a name replaces the earlier one (keeping its
//! `VALUE`s), and for number-to-name lookups the latest name defined for a
//! number wins, as in FreeRADIUS. `$INCLUDE` goes through a caller-supplied
//! resolver, which decides what may be read; includes nest at most
//! [`MAX_INCLUDE_DEPTH`] deep.

mod value;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use crate::attr;
use crate::error::RadiusError;
use crate::packet::{Attribute, MAX_VALUE_LEN};

/// How deep `$INCLUDE`s may nest (the top file is depth 0).
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// How an attribute's value is read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrType {
    /// Text, sent as its UTF-8 bytes.
    String,
    /// Opaque bytes; also every type this crate does not interpret.
    Octets,
    /// 32-bit unsigned integer, big-endian; may have `VALUE` names.
    Integer,
    /// IPv4 address.
    IpAddr,
    /// IPv6 address.
    Ipv6Addr,
    /// IPv6 prefix (RFC 3162 §2.3): reserved octet, prefix length, prefix.
    Ipv6Prefix,
    /// Seconds since the Unix epoch, 32-bit.
    Date,
    /// 8-bit unsigned integer.
    Byte,
    /// 16-bit unsigned integer.
    Short,
    /// 64-bit unsigned integer.
    Integer64,
    /// 6-octet Ethernet address.
    Ether,
    /// 8-octet interface identifier (RFC 3162 §2.2).
    Ifid,
}

impl AttrType {
    /// Maps a FreeRADIUS type name (case-insensitive, `octets[N]` allowed)
    /// to the type this crate uses; `None` for a name FreeRADIUS does not
    /// have either.
    pub fn from_freeradius(name: &str) -> Option<AttrType> {
        let lower = name.to_ascii_lowercase();
        let base = match lower.split_once('[') {
            Some((base, size)) if size.ends_with(']') => base,
            Some(_) => return None,
            None => lower.as_str(),
        };
        Some(match base {
            "string" => AttrType::String,
            "octets" => AttrType::Octets,
            "integer" | "uint32" => AttrType::Integer,
            "ipaddr" | "ipv4addr" => AttrType::IpAddr,
            "ipv6addr" => AttrType::Ipv6Addr,
            "ipv6prefix" => AttrType::Ipv6Prefix,
            "date" => AttrType::Date,
            "byte" | "uint8" => AttrType::Byte,
            "short" | "uint16" => AttrType::Short,
            "integer64" | "uint64" => AttrType::Integer64,
            "ether" => AttrType::Ether,
            "ifid" => AttrType::Ifid,
            // Types FreeRADIUS knows and this crate keeps as raw octets.
            "abinary" | "tlv" | "struct" | "vsa" | "extended" | "long-extended" | "evs" | "combo-ip"
            | "combo-ipaddr" | "ipv4prefix" | "signed" | "int8" | "int16" | "int32" | "int64" | "bool" | "float32"
            | "float64" | "time_delta" | "group" => AttrType::Octets,
            _ => return None,
        })
    }
}

/// Flags of an `ATTRIBUTE` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttrFlags {
    /// `encrypt=N`: 0 none, 1 User-Password style (RFC 2865 §5.2), 2
    /// Tunnel-Password style (RFC 2868 §3.5), 3 Ascend's.
    pub encrypt: u8,
    /// `has_tag`: RFC 2868 tagged attribute.
    pub has_tag: bool,
    /// Every other flag, verbatim (`array`, `concat`, `virtual`, ...).
    pub other: Vec<String>,
}

/// One attribute definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrDef {
    /// Name as written in the dictionary.
    pub name: String,
    /// Vendor-Id for a vendor attribute, `None` for a standard one.
    pub vendor: Option<u32>,
    /// Attribute number (the vendor type for a vendor attribute).
    pub code: u32,
    /// How the value is read and written.
    pub typ: AttrType,
    /// The type name as declared, lower-cased (`abinary`, `octets[16]`...).
    pub type_name: String,
    /// `VALUE` names of integer-like attributes.
    pub values: BTreeMap<String, u64>,
    /// Flags of the definition.
    pub flags: AttrFlags,
}

impl AttrDef {
    /// The number a `VALUE` name stands for (case-insensitive).
    pub fn value_by_name(&self, name: &str) -> Option<u64> {
        self.values.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    /// A `VALUE` name for a number, if there is one (the alphabetically
    /// first when there are aliases).
    pub fn value_name(&self, value: u64) -> Option<&str> {
        self.values.iter().find(|(_, v)| **v == value).map(|(n, _)| n.as_str())
    }
}

/// A vendor (`VENDOR` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vendor {
    /// Name as written.
    pub name: String,
    /// IANA Private Enterprise Number.
    pub id: u32,
    /// Octets of the vendor type in a sub-attribute: 1, 2 or 4.
    pub type_size: u8,
    /// Octets of the vendor length in a sub-attribute: 0, 1 or 2.
    pub length_size: u8,
    /// WiMAX-style continuation octet after the length (`format=1,1,c`).
    pub continuation: bool,
}

/// A set of attribute and vendor definitions.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    attrs: Vec<AttrDef>,
    by_name: HashMap<String, usize>,
    by_code: HashMap<(Option<u32>, u32), usize>,
    vendors: Vec<Vendor>,
    vendor_by_name: HashMap<String, usize>,
    vendor_by_id: HashMap<u32, usize>,
}

/// The dictionaries shipped in `crates/radius/dictionaries/`.
const BUILTIN_FILES: &[(&str, &str)] = &[
    ("dictionary", include_str!("../../dictionaries/dictionary")),
    ("dictionary.rfc2865", include_str!("../../dictionaries/dictionary.rfc2865")),
    ("dictionary.rfc2866", include_str!("../../dictionaries/dictionary.rfc2866")),
    ("dictionary.rfc2867", include_str!("../../dictionaries/dictionary.rfc2867")),
    ("dictionary.rfc2868", include_str!("../../dictionaries/dictionary.rfc2868")),
    ("dictionary.rfc2869", include_str!("../../dictionaries/dictionary.rfc2869")),
    ("dictionary.rfc3162", include_str!("../../dictionaries/dictionary.rfc3162")),
    ("dictionary.rfc4372", include_str!("../../dictionaries/dictionary.rfc4372")),
    ("dictionary.rfc4675", include_str!("../../dictionaries/dictionary.rfc4675")),
    ("dictionary.rfc4818", include_str!("../../dictionaries/dictionary.rfc4818")),
    ("dictionary.rfc5176", include_str!("../../dictionaries/dictionary.rfc5176")),
    ("dictionary.rfc6911", include_str!("../../dictionaries/dictionary.rfc6911")),
    ("dictionary.aruba", include_str!("../../dictionaries/dictionary.aruba")),
    ("dictionary.cisco", include_str!("../../dictionaries/dictionary.cisco")),
    ("dictionary.fortinet", include_str!("../../dictionaries/dictionary.fortinet")),
    ("dictionary.juniper", include_str!("../../dictionaries/dictionary.juniper")),
    ("dictionary.microsoft", include_str!("../../dictionaries/dictionary.microsoft")),
    ("dictionary.mikrotik", include_str!("../../dictionaries/dictionary.mikrotik")),
    ("dictionary.paloalto", include_str!("../../dictionaries/dictionary.paloalto")),
];

/// Resolves `$INCLUDE`s from the built-in files only.
pub fn builtin_file(name: &str) -> Result<String, String> {
    BUILTIN_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| (*text).to_owned())
        .ok_or_else(|| "not a built-in dictionary file".to_owned())
}

static BUILTIN: LazyLock<Result<Dictionary, RadiusError>> =
    LazyLock::new(|| Dictionary::parse(BUILTIN_FILES[0].1, BUILTIN_FILES[0].0, &builtin_file));

/// An empty dictionary to fall back on; see [`Dictionary::builtin`].
static EMPTY: LazyLock<Dictionary> = LazyLock::new(Dictionary::default);

impl Dictionary {
    /// The built-in dictionaries: the common RFC attributes and the vendors
    /// Cisco (9), Microsoft (311), Juniper (2636), Fortinet (12356), Aruba
    /// (14823), MikroTik (14988) and Palo Alto (25461).
    ///
    /// The files are compiled in and a unit test parses them, so this
    /// cannot fail in a released build; should it ever, it returns an empty
    /// dictionary rather than panicking in a server, and
    /// [`Dictionary::try_builtin`] reports the error.
    pub fn builtin() -> &'static Dictionary {
        BUILTIN.as_ref().unwrap_or(&EMPTY)
    }

    /// The built-in dictionaries, or the error that kept them from loading.
    pub fn try_builtin() -> Result<&'static Dictionary, RadiusError> {
        BUILTIN.as_ref().map_err(Clone::clone)
    }

    /// Parses a FreeRADIUS-format dictionary. `name` is used in error
    /// messages and as the base for relative `$INCLUDE`s; `include` returns
    /// the text of an included file (its error text ends up in the
    /// [`RadiusError::Dictionary`] message).
    pub fn parse(
        text: &str,
        name: &str,
        include: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<Dictionary, RadiusError> {
        let mut p = Parser { dict: Dictionary::default(), include, pending: Vec::new(), skipped: HashSet::new() };
        p.file(text, name, 0)?;
        for v in std::mem::take(&mut p.pending) {
            let key = v.attribute.to_ascii_lowercase();
            match p.dict.by_name.get(&key) {
                Some(&i) => {
                    p.dict.attrs[i].values.insert(v.name, v.value);
                }
                None if p.skipped.contains(&key) => {}
                None => {
                    return Err(RadiusError::Dictionary {
                        file: v.file,
                        line: v.line,
                        reason: format!("VALUE for unknown attribute {}", v.attribute),
                    });
                }
            }
        }
        Ok(p.dict)
    }

    /// Adds every vendor and attribute of `other`; on a clash `other`'s
    /// definition wins and the `VALUE`s of both are kept (`other`'s win).
    pub fn merge(&mut self, other: Dictionary) {
        for v in other.vendors {
            self.insert_vendor(v);
        }
        for a in other.attrs {
            self.insert_attr(a);
        }
    }

    /// The attribute called `name` (case-insensitive).
    pub fn attribute_by_name(&self, name: &str) -> Option<&AttrDef> {
        self.by_name.get(&name.to_ascii_lowercase()).map(|&i| &self.attrs[i])
    }

    /// The attribute with this number, for a vendor or (`None`) standard.
    pub fn attribute_by_code(&self, vendor: Option<u32>, code: u32) -> Option<&AttrDef> {
        self.by_code.get(&(vendor, code)).map(|&i| &self.attrs[i])
    }

    /// The vendor called `name` (case-insensitive).
    pub fn vendor_by_name(&self, name: &str) -> Option<&Vendor> {
        self.vendor_by_name.get(&name.to_ascii_lowercase()).map(|&i| &self.vendors[i])
    }

    /// The vendor with this Private Enterprise Number.
    pub fn vendor_by_id(&self, id: u32) -> Option<&Vendor> {
        self.vendor_by_id.get(&id).map(|&i| &self.vendors[i])
    }

    /// Every attribute definition, in definition order.
    pub fn attributes(&self) -> impl Iterator<Item = &AttrDef> {
        self.attrs.iter()
    }

    /// Every vendor, in definition order.
    pub fn vendors(&self) -> impl Iterator<Item = &Vendor> {
        self.vendors.iter()
    }

    /// Builds an attribute from its name and value text.
    ///
    /// `name` may carry an RFC 2868 tag as `Name:N` (N in 0..=31) for
    /// attributes flagged `has_tag`. The text is read by type: integer,
    /// byte, short and integer64 as decimal or a `VALUE` name; ipaddr as a
    /// dotted quad; ipv6addr in RFC 5952 text; ipv6prefix as `addr/len`;
    /// string as its UTF-8 bytes, verbatim (no quotes or escapes); octets as
    /// `0x` and hex digits; date as Unix seconds; ether as six hex pairs
    /// separated by `:` or `-`; ifid as four groups of four hex digits. A
    /// vendor attribute comes back as a Vendor-Specific (26) wrapping one
    /// sub-attribute in the vendor's format.
    ///
    /// Attributes hidden on the wire (`encrypt=N`, such as User-Password)
    /// are refused: hiding needs the secret and the request authenticator
    /// ([`crate::hide_password`]).
    pub fn make_attribute(&self, name: &str, value: &str) -> Result<Attribute, RadiusError> {
        let (def, tag) = self.lookup_tagged(name)?;
        let invalid = |reason: String| RadiusError::InvalidValue { attribute: def.name.clone(), reason };
        if def.flags.encrypt != 0 {
            return Err(invalid(format!(
                "is hidden on the wire (encrypt={}); build it with the shared secret and request authenticator",
                def.flags.encrypt
            )));
        }
        let data = value::parse(def, value, tag).map_err(invalid)?;
        match def.vendor {
            None => {
                let Ok(typ) = u8::try_from(def.code) else {
                    return Err(invalid(format!(
                        "number {} is internal to the dictionary, not a wire attribute",
                        def.code
                    )));
                };
                if data.len() > MAX_VALUE_LEN {
                    return Err(invalid(format!("value is {} bytes; at most {MAX_VALUE_LEN} fit", data.len())));
                }
                Ok(Attribute { typ, value: data })
            }
            Some(vendor_id) => {
                let Some(vendor) = self.vendor_by_id(vendor_id) else {
                    return Err(invalid(format!("vendor {vendor_id} is not defined")));
                };
                if vendor.continuation {
                    return Err(invalid("vendor format with a continuation octet is not supported".to_owned()));
                }
                let header = 4 + usize::from(vendor.type_size) + usize::from(vendor.length_size);
                let max = MAX_VALUE_LEN - header;
                if data.len() > max {
                    return Err(invalid(format!(
                        "value is {} bytes; at most {max} fit in a Vendor-Specific",
                        data.len()
                    )));
                }
                let mut out = Vec::with_capacity(header + data.len());
                out.extend_from_slice(&vendor_id.to_be_bytes());
                let code = def.code.to_be_bytes();
                out.extend_from_slice(&code[4 - usize::from(vendor.type_size)..]);
                // Both fit: header + data.len() <= 253 was checked above.
                let sub_len = (header - 4 + data.len()) as u16;
                match vendor.length_size {
                    1 => out.push(sub_len as u8),
                    2 => out.extend_from_slice(&sub_len.to_be_bytes()),
                    _ => {}
                }
                out.extend_from_slice(&data);
                Ok(Attribute { typ: attr::VENDOR_SPECIFIC, value: out })
            }
        }
    }

    /// A one-line, log-safe rendering: `Filter-Id = "admins"`,
    /// `Service-Type = Framed-User`, `Fortinet-Group-Name = "vpn"`. Unknown
    /// attributes come out as `Attr-N = 0x…` (`Attr-26.V.T` for an unknown
    /// sub-attribute of a known vendor); a Vendor-Specific that is not in
    /// its vendor's format as `Attr-26 = 0x…`. Values that don't fit their
    /// type are shown in hex. Hidden attributes (`encrypt=N`) show only
    /// their length, and strings have control characters and invalid UTF-8
    /// escaped, so a packet cannot forge log lines.
    pub fn describe(&self, attribute: &Attribute) -> String {
        if attribute.typ == attr::VENDOR_SPECIFIC {
            return self
                .describe_vsa(&attribute.value)
                .unwrap_or_else(|| format!("Attr-26 = 0x{}", hex::encode(&attribute.value)));
        }
        match self.attribute_by_code(None, u32::from(attribute.typ)) {
            Some(def) => value::describe(def, &def.name, &attribute.value),
            None => format!("Attr-{} = 0x{}", attribute.typ, hex::encode(&attribute.value)),
        }
    }

    fn describe_vsa(&self, value: &[u8]) -> Option<String> {
        let (id, mut rest) = value.split_first_chunk::<4>()?;
        let id = u32::from_be_bytes(*id);
        let vendor = self.vendor_by_id(id)?;
        if vendor.continuation {
            return None;
        }
        let t = usize::from(vendor.type_size);
        let l = usize::from(vendor.length_size);
        let mut parts = Vec::new();
        while !rest.is_empty() {
            let head = rest.get(..t + l)?;
            let code = head[..t].iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
            let len = match l {
                0 => rest.len(),
                _ => head[t..].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
            };
            let data = rest.get(t + l..len)?;
            rest = &rest[len..];
            parts.push(match self.attribute_by_code(Some(id), code) {
                Some(def) => value::describe(def, &def.name, data),
                None => format!("Attr-26.{id}.{code} = 0x{}", hex::encode(data)),
            });
        }
        if parts.is_empty() { None } else { Some(parts.join(", ")) }
    }

    /// Looks up `Name` or, for tagged attributes, `Name:tag`.
    fn lookup_tagged(&self, name: &str) -> Result<(&AttrDef, Option<u8>), RadiusError> {
        if let Some(def) = self.attribute_by_name(name) {
            return Ok((def, None));
        }
        let unknown = || RadiusError::UnknownAttribute { name: name.to_owned() };
        let (base, tag) = name.rsplit_once(':').ok_or_else(unknown)?;
        let def = self.attribute_by_name(base).ok_or_else(unknown)?;
        let invalid =
            |reason: &str| RadiusError::InvalidValue { attribute: def.name.clone(), reason: reason.to_owned() };
        if !def.flags.has_tag {
            return Err(invalid("has no tag (only has_tag attributes take Name:N)"));
        }
        match tag.parse::<u8>() {
            Ok(t) if t <= 0x1f => Ok((def, Some(t))),
            _ => Err(invalid("tag must be a number in 0..=31")),
        }
    }

    fn insert_vendor(&mut self, v: Vendor) {
        let key = v.name.to_ascii_lowercase();
        let id = v.id;
        let i = match self.vendor_by_name.get(&key) {
            Some(&i) => {
                let old_id = self.vendors[i].id;
                if self.vendor_by_id.get(&old_id) == Some(&i) {
                    self.vendor_by_id.remove(&old_id);
                }
                self.vendors[i] = v;
                i
            }
            None => {
                self.vendors.push(v);
                self.vendors.len() - 1
            }
        };
        self.vendor_by_name.insert(key, i);
        self.vendor_by_id.insert(id, i);
    }

    fn insert_attr(&mut self, mut a: AttrDef) {
        let key = a.name.to_ascii_lowercase();
        let code_key = (a.vendor, a.code);
        let i = match self.by_name.get(&key) {
            Some(&i) => {
                let old = &mut self.attrs[i];
                let old_key = (old.vendor, old.code);
                if self.by_code.get(&old_key) == Some(&i) {
                    self.by_code.remove(&old_key);
                }
                let mut values = std::mem::take(&mut old.values);
                values.append(&mut a.values);
                a.values = values;
                *old = a;
                i
            }
            None => {
                self.attrs.push(a);
                self.attrs.len() - 1
            }
        };
        self.by_name.insert(key, i);
        self.by_code.insert(code_key, i);
    }
}

/// A `VALUE` whose attribute is defined later (or in a later file).
struct PendingValue {
    attribute: String,
    name: String,
    value: u64,
    file: String,
    line: usize,
}

struct Parser<'a> {
    dict: Dictionary,
    include: &'a dyn Fn(&str) -> Result<String, String>,
    pending: Vec<PendingValue>,
    /// Lower-cased names of attributes read but not kept (TLV children,
    /// extended attributes): their `VALUE`s are ignored.
    skipped: HashSet<String>,
}

/// The vendor block a line is in.
struct VendorBlock {
    name: String,
    id: u32,
    /// `format=Extended-Vendor-Specific-N`: attributes are skipped.
    skip: bool,
}

impl Parser<'_> {
    fn file(&mut self, text: &str, file: &str, depth: usize) -> Result<(), RadiusError> {
        let mut block: Option<VendorBlock> = None;
        let mut tlvs: Vec<String> = Vec::new();
        let mut last_line = 0;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            last_line = line;
            let err = |reason: String| RadiusError::Dictionary { file: file.to_owned(), line, reason };
            let content = raw.split('#').next().unwrap_or("");
            let tokens: Vec<&str> = content.split_whitespace().collect();
            let Some((&keyword, args)) = tokens.split_first() else { continue };
            match keyword {
                "$INCLUDE" | "$INCLUDE-" => {
                    let [target] = args else { return Err(err(format!("{keyword} takes one file name"))) };
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(err(format!("$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH} files")));
                    }
                    let path = relative_to(file, target);
                    match (self.include)(&path) {
                        Ok(included) => self.file(&included, &path, depth + 1)?,
                        Err(_) if keyword == "$INCLUDE-" => {}
                        Err(e) => return Err(err(format!("cannot include {path}: {e}"))),
                    }
                }
                "VENDOR" => self.vendor(args).map_err(err)?,
                "BEGIN-VENDOR" => {
                    if block.is_some() {
                        return Err(err("BEGIN-VENDOR inside another vendor block".to_owned()));
                    }
                    block = Some(self.begin_vendor(args).map_err(err)?);
                }
                "END-VENDOR" => match (&block, args) {
                    (Some(b), [name]) if b.name.eq_ignore_ascii_case(name) => block = None,
                    (Some(b), _) => return Err(err(format!("END-VENDOR does not close BEGIN-VENDOR {}", b.name))),
                    (None, _) => return Err(err("END-VENDOR without BEGIN-VENDOR".to_owned())),
                },
                "BEGIN-TLV" => {
                    let [name] = args else { return Err(err("BEGIN-TLV takes one attribute name".to_owned())) };
                    tlvs.push((*name).to_owned());
                }
                "END-TLV" => match (tlvs.last(), args) {
                    (Some(open), [name]) if open.eq_ignore_ascii_case(name) => {
                        tlvs.pop();
                    }
                    (Some(open), _) => return Err(err(format!("END-TLV does not close BEGIN-TLV {open}"))),
                    (None, _) => return Err(err("END-TLV without BEGIN-TLV".to_owned())),
                },
                "ATTRIBUTE" => self.attribute(args, block.as_ref(), !tlvs.is_empty()).map_err(err)?,
                "VALUE" => self.value(args, file, line).map_err(err)?,
                other => return Err(err(format!("unknown keyword {other}"))),
            }
        }
        let err = |reason: String| RadiusError::Dictionary { file: file.to_owned(), line: last_line, reason };
        if let Some(b) = block {
            return Err(err(format!("BEGIN-VENDOR {} is not closed by END-VENDOR", b.name)));
        }
        if let Some(open) = tlvs.last() {
            return Err(err(format!("BEGIN-TLV {open} is not closed by END-TLV")));
        }
        Ok(())
    }

    fn vendor(&mut self, args: &[&str]) -> Result<(), String> {
        let (name, id, format) = match args {
            [name, id] => (name, id, None),
            [name, id, format] => (name, id, Some(*format)),
            _ => return Err("VENDOR takes a name, a number and an optional format=T,L".to_owned()),
        };
        let id = parse_number(id).and_then(|n| u32::try_from(n).ok()).ok_or("vendor number must be a 32-bit number")?;
        let (type_size, length_size, continuation) = match format {
            None => (1, 1, false),
            Some(f) => parse_vendor_format(f)?,
        };
        self.dict.insert_vendor(Vendor { name: (*name).to_owned(), id, type_size, length_size, continuation });
        Ok(())
    }

    fn begin_vendor(&self, args: &[&str]) -> Result<VendorBlock, String> {
        let (name, skip) = match args {
            [name] => (name, false),
            [name, format] if format.to_ascii_lowercase().starts_with("format=extended-vendor-specific-") => {
                (name, true)
            }
            _ => return Err("BEGIN-VENDOR takes a vendor name".to_owned()),
        };
        let vendor = self.dict.vendor_by_name(name).ok_or_else(|| format!("BEGIN-VENDOR of unknown vendor {name}"))?;
        Ok(VendorBlock { name: vendor.name.clone(), id: vendor.id, skip })
    }

    fn attribute(&mut self, args: &[&str], block: Option<&VendorBlock>, in_tlv: bool) -> Result<(), String> {
        let (name, number, type_name, rest) = match args {
            [name, number, typ, rest @ ..] if rest.len() <= 2 => (*name, *number, *typ, rest),
            _ => return Err("ATTRIBUTE takes a name, a number, a type and optional vendor and flags".to_owned()),
        };
        let typ = AttrType::from_freeradius(type_name).ok_or_else(|| format!("unknown type {type_name}"))?;
        // Old syntax: a vendor name in the fourth column, then flags.
        let mut vendor = block.map(|b| b.id);
        let mut flag_text = None;
        match rest {
            [] => {}
            [one] => match self.dict.vendor_by_name(one) {
                Some(v) if !looks_like_flags(one) => vendor = Some(v.id),
                _ => flag_text = Some(*one),
            },
            [v, flags] => {
                let v = self.dict.vendor_by_name(v).ok_or_else(|| format!("unknown vendor {v}"))?;
                vendor = Some(v.id);
                flag_text = Some(*flags);
            }
            _ => return Err("too many fields".to_owned()),
        }
        // What cannot be put on the wire by this crate is read and skipped.
        if in_tlv || number.contains('.') || block.is_some_and(|b| b.skip) {
            self.skipped.insert(name.to_ascii_lowercase());
            return Ok(());
        }
        let code = parse_number(number)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("attribute number {number} is not a 32-bit number"))?;
        if let Some(id) = vendor {
            let size = self.dict.vendor_by_id(id).map_or(1, |v| v.type_size);
            if size < 4 && code >= 1 << (8 * u32::from(size)) {
                return Err(format!("attribute number {code} does not fit the vendor's {size}-octet type field"));
            }
        }
        let flags = match flag_text {
            Some(text) => parse_flags(text)?,
            None => AttrFlags::default(),
        };
        self.dict.insert_attr(AttrDef {
            name: name.to_owned(),
            vendor,
            code,
            typ,
            type_name: type_name.to_ascii_lowercase(),
            values: BTreeMap::new(),
            flags,
        });
        Ok(())
    }

    fn value(&mut self, args: &[&str], file: &str, line: usize) -> Result<(), String> {
        let [attribute, name, number] = args else {
            return Err("VALUE takes an attribute name, a value name and a number".to_owned());
        };
        let value = parse_number(number).ok_or_else(|| format!("value number {number} is not a number"))?;
        // Resolved after the whole tree is read: a VALUE may come before its
        // ATTRIBUTE (in another file, say).
        self.pending.push(PendingValue {
            attribute: (*attribute).to_owned(),
            name: (*name).to_owned(),
            value,
            file: file.to_owned(),
            line,
        });
        Ok(())
    }
}

/// `$INCLUDE`s are relative to the including file's directory.
fn relative_to(file: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_owned();
    }
    match file.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{target}"),
        None => target.to_owned(),
    }
}

/// Decimal or `0x` hexadecimal.
fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_vendor_format(f: &str) -> Result<(u8, u8, bool), String> {
    let bad = || "vendor format must be format=T,L with T in 1,2,4 and L in 0,1,2 (and optional ,c)".to_owned();
    let spec = f.strip_prefix("format=").ok_or_else(bad)?;
    let parts: Vec<&str> = spec.split(',').collect();
    let (t, l, c) = match parts.as_slice() {
        [t, l] => (*t, *l, false),
        [t, l, "c"] => (*t, *l, true),
        _ => return Err(bad()),
    };
    match (t, l) {
        ("1" | "2" | "4", "0" | "1" | "2") => Ok((t.parse().map_err(|_| bad())?, l.parse().map_err(|_| bad())?, c)),
        _ => Err(bad()),
    }
}

fn looks_like_flags(s: &str) -> bool {
    s.contains('=') || s.contains(',') || matches!(s, "has_tag" | "array" | "concat" | "virtual" | "secret")
}

fn parse_flags(text: &str) -> Result<AttrFlags, String> {
    let mut flags = AttrFlags::default();
    for flag in text.split(',').filter(|f| !f.is_empty()) {
        match flag.split_once('=') {
            Some(("encrypt", n)) => {
                flags.encrypt = match n.parse::<u8>() {
                    Ok(n @ 1..=3) => n,
                    _ => return Err("encrypt= must be 1, 2 or 3".to_owned()),
                }
            }
            _ if flag == "has_tag" => flags.has_tag = true,
            _ => flags.other.push(flag.to_owned()),
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests;

use super::*;
use crate::packet::Packet;
use crate::{Code, attr};

fn no_include(_: &str) -> Result<String, String> {
    Err("includes are not allowed here".to_owned())
}

fn parse(text: &str) -> Result<Dictionary, RadiusError> {
    Dictionary::parse(text, "test.dict", &no_include)
}

fn dict_err(text: &str) -> (String, usize, String) {
    match parse(text) {
        Err(RadiusError::Dictionary { file, line, reason }) => (file, line, reason),
        other => panic!("expected a dictionary error, got {other:?}"),
    }
}

const SNIPPET: &str = "
# A small dictionary in FreeRADIUS format.
ATTRIBUTE\tUser-Name\t1\tstring
ATTRIBUTE   Service-Type   6   integer   # trailing comment
ATTRIBUTE   Framed-IP-Address 8 ipaddr
ATTRIBUTE   Class 25 octets
ATTRIBUTE   Vendor-Specific 26 vsa
VALUE       Service-Type Login-User 1
VALUE       Service-Type Framed-User 0x2
VENDOR      Example 32473
BEGIN-VENDOR Example
ATTRIBUTE   Example-Role  1 string
ATTRIBUTE   Example-Level 2 integer
ATTRIBUTE   Example-Key   3 octets encrypt=2
VALUE       Example-Level Admin 15
END-VENDOR  Example
VENDOR      Wide 4242 format=2,2
BEGIN-VENDOR Wide
ATTRIBUTE   Wide-Thing 300 string
END-VENDOR Wide
$INCLUDE    sub/dictionary.extra
";

const EXTRA: &str = "
ATTRIBUTE Session-Timeout 27 integer
ATTRIBUTE Tunnel-Type 64 integer has_tag
ATTRIBUTE Tunnel-Private-Group-Id 81 string has_tag
VALUE Tunnel-Type VLAN 13
$INCLUDE- dictionary.optional-and-missing
";

fn snippet() -> Dictionary {
    let include = |name: &str| match name {
        "sub/dictionary.extra" => Ok(EXTRA.to_owned()),
        _ => Err(format!("no file {name}")),
    };
    Dictionary::parse(SNIPPET, "dictionary", &include).unwrap()
}

#[test]
fn snippet_parses() {
    let d = snippet();
    let st = d.attribute_by_name("service-type").unwrap();
    assert_eq!((st.code, st.vendor, st.typ), (6, None, AttrType::Integer));
    assert_eq!(st.value_by_name("framed-user"), Some(2));
    assert_eq!(st.value_name(1), Some("Login-User"));
    let role = d.attribute_by_name("EXAMPLE-ROLE").unwrap();
    assert_eq!((role.code, role.vendor, role.typ), (1, Some(32473), AttrType::String));
    assert_eq!(d.attribute_by_code(Some(32473), 2).unwrap().name, "Example-Level");
    assert_eq!(d.attribute_by_name("Example-Key").unwrap().flags.encrypt, 2);
    assert_eq!(d.vendor_by_name("example").unwrap().id, 32473);
    let wide = d.vendor_by_id(4242).unwrap();
    assert_eq!((wide.type_size, wide.length_size), (2, 2));
    assert!(d.attribute_by_name("Session-Timeout").is_some());
    assert!(d.attribute_by_name("Tunnel-Type").unwrap().flags.has_tag);
    assert_eq!(d.attribute_by_name("Vendor-Specific").unwrap().typ, AttrType::Octets);
    assert_eq!(d.attribute_by_name("Vendor-Specific").unwrap().type_name, "vsa");
    assert_eq!(d.attributes().count(), 12);
    assert_eq!(d.vendors().count(), 2);
}

#[test]
fn errors_name_file_and_line() {
    assert_eq!(dict_err("\n\nFOO bar"), ("test.dict".into(), 3, "unknown keyword FOO".into()));
    assert_eq!(dict_err("ATTRIBUTE X 1 strng").2, "unknown type strng");
    assert_eq!(dict_err("ATTRIBUTE X 1").1, 1);
    assert_eq!(dict_err("ATTRIBUTE X one string").2, "attribute number one is not a 32-bit number");
    assert_eq!(dict_err("ATTRIBUTE X 1 string encrypt=9").2, "encrypt= must be 1, 2 or 3");
    assert_eq!(
        dict_err("ATTRIBUTE X 1 string\n\nVALUE Y A 1"),
        ("test.dict".into(), 3, "VALUE for unknown attribute Y".into())
    );
    assert_eq!(dict_err("ATTRIBUTE X 1 integer\nVALUE X A ten").2, "value number ten is not a number");
    assert_eq!(dict_err("BEGIN-VENDOR Nope").2, "BEGIN-VENDOR of unknown vendor Nope");
    assert_eq!(dict_err("VENDOR V 1\nBEGIN-VENDOR V\n").2, "BEGIN-VENDOR V is not closed by END-VENDOR");
    assert_eq!(dict_err("VENDOR V 1\nBEGIN-VENDOR V\nEND-VENDOR W").1, 3);
    assert_eq!(dict_err("END-VENDOR V").2, "END-VENDOR without BEGIN-VENDOR");
    assert!(dict_err("VENDOR V 1 format=3,1").2.starts_with("vendor format must be"));
    assert_eq!(
        dict_err("VENDOR V 1\nBEGIN-VENDOR V\nATTRIBUTE A 256 string\nEND-VENDOR V").2,
        "attribute number 256 does not fit the vendor's 1-octet type field"
    );
    assert_eq!(dict_err("ATTRIBUTE A 1 string NoSuchVendor has_tag").2, "unknown vendor NoSuchVendor");
    assert_eq!(dict_err("BEGIN-TLV A\n").2, "BEGIN-TLV A is not closed by END-TLV");
    let (file, line, reason) = dict_err("\n$INCLUDE dictionary.missing");
    assert_eq!((file.as_str(), line), ("test.dict", 2));
    assert_eq!(reason, "cannot include dictionary.missing: includes are not allowed here");
    // The message format is `file:line: reason`.
    assert_eq!(parse("X").unwrap_err().to_string(), "test.dict:1: unknown keyword X");
}

#[test]
fn errors_in_included_files_name_that_file() {
    let include = |name: &str| match name {
        "d/inner" => Ok("ATTRIBUTE A 1 string\nbogus".to_owned()),
        _ => Err("missing".to_owned()),
    };
    let e = Dictionary::parse("$INCLUDE inner", "d/outer", &include).unwrap_err();
    assert_eq!(e, RadiusError::Dictionary { file: "d/inner".into(), line: 2, reason: "unknown keyword bogus".into() });
}

#[test]
fn include_depth_is_bounded() {
    // A file that includes itself stops at the depth bound instead of
    // recursing forever.
    let include = |_: &str| Ok("$INCLUDE self".to_owned());
    let e = Dictionary::parse("$INCLUDE self", "self", &include).unwrap_err();
    assert_eq!(
        e,
        RadiusError::Dictionary { file: "self".into(), line: 1, reason: "$INCLUDE nested deeper than 8 files".into() }
    );
    // Exactly eight levels are fine.
    let include = |name: &str| {
        let n: usize = name.trim_start_matches('f').parse().unwrap();
        Ok(if n < 8 { format!("$INCLUDE f{}", n + 1) } else { "ATTRIBUTE Deep 1 string".to_owned() })
    };
    let d = Dictionary::parse("$INCLUDE f1", "f0", &include).unwrap();
    assert!(d.attribute_by_name("Deep").is_some());
}

#[test]
fn freeradius_constructs_that_are_read_and_skipped() {
    let d = parse(
        "VENDOR WiMAX 24757 format=1,1,c
BEGIN-VENDOR WiMAX
ATTRIBUTE WiMAX-Capability 1 tlv
BEGIN-TLV WiMAX-Capability
ATTRIBUTE WiMAX-Release 1 string
END-TLV WiMAX-Capability
ATTRIBUTE WiMAX-Child 1.2 integer
VALUE WiMAX-Child Thing 1
END-VENDOR WiMAX
VENDOR FreeRADIUS 11344
BEGIN-VENDOR FreeRADIUS format=Extended-Vendor-Specific-5
ATTRIBUTE FreeRADIUS-EVS 1 string
END-VENDOR FreeRADIUS
ATTRIBUTE Frag-Status 241.1 integer
ATTRIBUTE Old-Style 1 string USR
VENDOR USR 429 format=4,0
ATTRIBUTE USR-Thing 1 octets[16] USR
ATTRIBUTE Abin 242 abinary
ATTRIBUTE Arr 243 ipaddr array
",
    )
    .unwrap();
    assert!(d.vendor_by_id(24757).unwrap().continuation);
    assert_eq!(d.attribute_by_name("WiMAX-Capability").unwrap().typ, AttrType::Octets);
    assert!(d.attribute_by_name("WiMAX-Release").is_none());
    assert!(d.attribute_by_name("WiMAX-Child").is_none());
    assert!(d.attribute_by_name("FreeRADIUS-EVS").is_none());
    assert!(d.attribute_by_name("Frag-Status").is_none());
    // USR was not yet defined when Old-Style was read, so it is a flag.
    assert_eq!(d.attribute_by_name("Old-Style").unwrap().flags.other, vec!["USR".to_owned()]);
    let usr = d.attribute_by_name("USR-Thing").unwrap();
    assert_eq!((usr.vendor, usr.typ, usr.type_name.as_str()), (Some(429), AttrType::Octets, "octets[16]"));
    assert_eq!(d.attribute_by_name("Abin").unwrap().typ, AttrType::Octets);
    assert_eq!(d.attribute_by_name("Arr").unwrap().flags.other, vec!["array".to_owned()]);
}

#[test]
fn redefinition_and_merge() {
    let mut a = parse("ATTRIBUTE X 1 integer\nVALUE X One 1\nATTRIBUTE Y 2 string").unwrap();
    let b = parse("ATTRIBUTE x 3 integer\nVALUE X Two 2\nATTRIBUTE Z 2 string\nVENDOR V 7").unwrap();
    a.merge(b);
    let x = a.attribute_by_name("X").unwrap();
    assert_eq!(x.code, 3);
    assert_eq!(x.value_by_name("one"), Some(1));
    assert_eq!(x.value_by_name("two"), Some(2));
    // Number 1 no longer names X; number 2 now names Z, the latest.
    assert!(a.attribute_by_code(None, 1).is_none());
    assert_eq!(a.attribute_by_code(None, 2).unwrap().name, "Z");
    assert_eq!(a.attribute_by_name("Y").unwrap().code, 2);
    assert_eq!(a.vendor_by_id(7).unwrap().name, "V");
}

#[test]
fn builtin_loads() {
    let d = Dictionary::try_builtin().unwrap();
    for (name, vendor, code) in [
        ("Fortinet-Group-Name", Some(12356), 1),
        ("Fortinet-Vdom-Name", Some(12356), 3),
        ("Fortinet-Access-Profile", Some(12356), 6),
        ("Cisco-AVPair", Some(9), 1),
        ("Cisco-NAS-Port", Some(9), 2),
        ("MS-CHAP2-Response", Some(311), 25),
        ("Juniper-Local-User-Name", Some(2636), 1),
        ("Juniper-Allow-Commands", Some(2636), 2),
        ("PaloAlto-Admin-Role", Some(25461), 1),
        ("PaloAlto-User-Group", Some(25461), 5),
        ("Aruba-User-Role", Some(14823), 1),
        ("Aruba-Admin-Role", Some(14823), 4),
        ("Mikrotik-Group", Some(14988), 3),
        ("Mikrotik-Rate-Limit", Some(14988), 8),
        ("Filter-Id", None, 11),
        ("Session-Timeout", None, 27),
        ("Reply-Message", None, 18),
        ("Class", None, 25),
        ("Error-Cause", None, 101),
        ("NAS-IPv6-Address", None, 95),
    ] {
        let def = d.attribute_by_name(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!((def.vendor, def.code), (vendor, code), "{name}");
        assert!(d.attribute_by_name(&name.to_ascii_uppercase()).is_some());
    }
    assert_eq!(d.attribute_by_name("MS-CHAP-Response").unwrap().typ, AttrType::Octets);
    assert_eq!(d.attribute_by_name("User-Password").unwrap().flags.encrypt, 1);
    assert!(std::ptr::eq(Dictionary::builtin(), d));
    let ids: Vec<u32> = d.vendors().map(|v| v.id).collect();
    assert_eq!(ids, vec![14823, 9, 12356, 2636, 311, 14988, 25461]);
}

#[test]
fn attr_constants_agree_with_the_builtin_dictionary() {
    let d = Dictionary::builtin();
    let pairs = [
        (attr::USER_NAME, "User-Name"),
        (attr::USER_PASSWORD, "User-Password"),
        (attr::CHAP_PASSWORD, "CHAP-Password"),
        (attr::NAS_IP_ADDRESS, "NAS-IP-Address"),
        (attr::NAS_PORT, "NAS-Port"),
        (attr::SERVICE_TYPE, "Service-Type"),
        (attr::FRAMED_PROTOCOL, "Framed-Protocol"),
        (attr::FRAMED_IP_ADDRESS, "Framed-IP-Address"),
        (attr::FRAMED_IP_NETMASK, "Framed-IP-Netmask"),
        (attr::FRAMED_ROUTING, "Framed-Routing"),
        (attr::FILTER_ID, "Filter-Id"),
        (attr::FRAMED_MTU, "Framed-MTU"),
        (attr::FRAMED_COMPRESSION, "Framed-Compression"),
        (attr::LOGIN_IP_HOST, "Login-IP-Host"),
        (attr::LOGIN_SERVICE, "Login-Service"),
        (attr::LOGIN_TCP_PORT, "Login-TCP-Port"),
        (attr::REPLY_MESSAGE, "Reply-Message"),
        (attr::CALLBACK_NUMBER, "Callback-Number"),
        (attr::CALLBACK_ID, "Callback-Id"),
        (attr::FRAMED_ROUTE, "Framed-Route"),
        (attr::FRAMED_IPX_NETWORK, "Framed-IPX-Network"),
        (attr::STATE, "State"),
        (attr::CLASS, "Class"),
        (attr::VENDOR_SPECIFIC, "Vendor-Specific"),
        (attr::SESSION_TIMEOUT, "Session-Timeout"),
        (attr::IDLE_TIMEOUT, "Idle-Timeout"),
        (attr::TERMINATION_ACTION, "Termination-Action"),
        (attr::CALLED_STATION_ID, "Called-Station-Id"),
        (attr::CALLING_STATION_ID, "Calling-Station-Id"),
        (attr::NAS_IDENTIFIER, "NAS-Identifier"),
        (attr::PROXY_STATE, "Proxy-State"),
        (attr::LOGIN_LAT_SERVICE, "Login-LAT-Service"),
        (attr::LOGIN_LAT_NODE, "Login-LAT-Node"),
        (attr::LOGIN_LAT_GROUP, "Login-LAT-Group"),
        (attr::FRAMED_APPLETALK_LINK, "Framed-AppleTalk-Link"),
        (attr::FRAMED_APPLETALK_NETWORK, "Framed-AppleTalk-Network"),
        (attr::FRAMED_APPLETALK_ZONE, "Framed-AppleTalk-Zone"),
        (attr::CHAP_CHALLENGE, "CHAP-Challenge"),
        (attr::NAS_PORT_TYPE, "NAS-Port-Type"),
        (attr::PORT_LIMIT, "Port-Limit"),
        (attr::LOGIN_LAT_PORT, "Login-LAT-Port"),
        (attr::ACCT_STATUS_TYPE, "Acct-Status-Type"),
        (attr::ACCT_DELAY_TIME, "Acct-Delay-Time"),
        (attr::ACCT_INPUT_OCTETS, "Acct-Input-Octets"),
        (attr::ACCT_OUTPUT_OCTETS, "Acct-Output-Octets"),
        (attr::ACCT_SESSION_ID, "Acct-Session-Id"),
        (attr::ACCT_AUTHENTIC, "Acct-Authentic"),
        (attr::ACCT_SESSION_TIME, "Acct-Session-Time"),
        (attr::ACCT_INPUT_PACKETS, "Acct-Input-Packets"),
        (attr::ACCT_OUTPUT_PACKETS, "Acct-Output-Packets"),
        (attr::ACCT_TERMINATE_CAUSE, "Acct-Terminate-Cause"),
        (attr::ACCT_MULTI_SESSION_ID, "Acct-Multi-Session-Id"),
        (attr::ACCT_LINK_COUNT, "Acct-Link-Count"),
        (attr::ACCT_TUNNEL_CONNECTION, "Acct-Tunnel-Connection"),
        (attr::ACCT_TUNNEL_PACKETS_LOST, "Acct-Tunnel-Packets-Lost"),
        (attr::TUNNEL_TYPE, "Tunnel-Type"),
        (attr::TUNNEL_MEDIUM_TYPE, "Tunnel-Medium-Type"),
        (attr::TUNNEL_CLIENT_ENDPOINT, "Tunnel-Client-Endpoint"),
        (attr::TUNNEL_SERVER_ENDPOINT, "Tunnel-Server-Endpoint"),
        (attr::TUNNEL_PASSWORD, "Tunnel-Password"),
        (attr::TUNNEL_PRIVATE_GROUP_ID, "Tunnel-Private-Group-Id"),
        (attr::TUNNEL_ASSIGNMENT_ID, "Tunnel-Assignment-Id"),
        (attr::TUNNEL_PREFERENCE, "Tunnel-Preference"),
        (attr::TUNNEL_CLIENT_AUTH_ID, "Tunnel-Client-Auth-Id"),
        (attr::TUNNEL_SERVER_AUTH_ID, "Tunnel-Server-Auth-Id"),
        (attr::ACCT_INPUT_GIGAWORDS, "Acct-Input-Gigawords"),
        (attr::ACCT_OUTPUT_GIGAWORDS, "Acct-Output-Gigawords"),
        (attr::EVENT_TIMESTAMP, "Event-Timestamp"),
        (attr::ARAP_PASSWORD, "ARAP-Password"),
        (attr::ARAP_FEATURES, "ARAP-Features"),
        (attr::ARAP_ZONE_ACCESS, "ARAP-Zone-Access"),
        (attr::ARAP_SECURITY, "ARAP-Security"),
        (attr::ARAP_SECURITY_DATA, "ARAP-Security-Data"),
        (attr::PASSWORD_RETRY, "Password-Retry"),
        (attr::PROMPT, "Prompt"),
        (attr::CONNECT_INFO, "Connect-Info"),
        (attr::CONFIGURATION_TOKEN, "Configuration-Token"),
        (attr::EAP_MESSAGE, "EAP-Message"),
        (attr::MESSAGE_AUTHENTICATOR, "Message-Authenticator"),
        (attr::ARAP_CHALLENGE_RESPONSE, "ARAP-Challenge-Response"),
        (attr::ACCT_INTERIM_INTERVAL, "Acct-Interim-Interval"),
        (attr::NAS_PORT_ID, "NAS-Port-Id"),
        (attr::FRAMED_POOL, "Framed-Pool"),
        (attr::CHARGEABLE_USER_IDENTITY, "Chargeable-User-Identity"),
        (attr::NAS_IPV6_ADDRESS, "NAS-IPv6-Address"),
        (attr::FRAMED_INTERFACE_ID, "Framed-Interface-Id"),
        (attr::FRAMED_IPV6_PREFIX, "Framed-IPv6-Prefix"),
        (attr::LOGIN_IPV6_HOST, "Login-IPv6-Host"),
        (attr::FRAMED_IPV6_ROUTE, "Framed-IPv6-Route"),
        (attr::FRAMED_IPV6_POOL, "Framed-IPv6-Pool"),
        (attr::ERROR_CAUSE, "Error-Cause"),
        (attr::EGRESS_VLANID, "Egress-VLANID"),
        (attr::INGRESS_FILTERS, "Ingress-Filters"),
        (attr::EGRESS_VLAN_NAME, "Egress-VLAN-Name"),
        (attr::USER_PRIORITY_TABLE, "User-Priority-Table"),
        (attr::DELEGATED_IPV6_PREFIX, "Delegated-IPv6-Prefix"),
        (attr::FRAMED_IPV6_ADDRESS, "Framed-IPv6-Address"),
        (attr::DNS_SERVER_IPV6_ADDRESS, "DNS-Server-IPv6-Address"),
        (attr::ROUTE_IPV6_INFORMATION, "Route-IPv6-Information"),
        (attr::DELEGATED_IPV6_PREFIX_POOL, "Delegated-IPv6-Prefix-Pool"),
        (attr::STATEFUL_IPV6_ADDRESS_POOL, "Stateful-IPv6-Address-Pool"),
    ];
    for (code, name) in pairs {
        let def = d.attribute_by_name(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!((def.vendor, def.code), (None, u32::from(code)), "{name}");
        assert_eq!(d.attribute_by_code(None, u32::from(code)).unwrap().name, name);
    }
    // And every standard attribute of the dictionary has a constant.
    let standard = d.attributes().filter(|a| a.vendor.is_none()).count();
    assert_eq!(standard, pairs.len());
    // EAP-Key-Name (102) has a constant but no dictionary entry yet.
    assert_eq!(attr::EAP_KEY_NAME, 102);
}

#[test]
fn make_attribute_by_type() {
    let d = Dictionary::builtin();
    let m = |n: &str, v: &str| d.make_attribute(n, v).unwrap();
    assert_eq!(m("Filter-Id", "admins"), Attribute::new(11, *b"admins"));
    assert_eq!(m("reply-message", "héllo"), Attribute::new(18, "héllo"));
    assert_eq!(m("Session-Timeout", "3600"), Attribute::new(27, 3600u32.to_be_bytes()));
    assert_eq!(m("Service-Type", "framed-user"), Attribute::new(6, 2u32.to_be_bytes()));
    assert_eq!(m("Service-Type", "6"), Attribute::new(6, 6u32.to_be_bytes()));
    assert_eq!(m("Framed-IP-Address", "10.1.2.3"), Attribute::new(8, [10, 1, 2, 3]));
    assert_eq!(
        m("NAS-IPv6-Address", "2001:db8::1"),
        Attribute::new(95, "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets())
    );
    assert_eq!(m("Framed-IPv6-Prefix", "2001:db8:1::/48"), Attribute::new(97, [0, 48, 0x20, 0x01, 0x0d, 0xb8, 0, 1]));
    assert_eq!(m("Framed-IPv6-Prefix", "::/0"), Attribute::new(97, [0, 0]));
    assert_eq!(m("Framed-IPv6-Prefix", "2001:db8::1/128").value.len(), 18);
    assert_eq!(
        m("Framed-Interface-Id", "0011:2233:4455:6677"),
        Attribute::new(96, [0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77])
    );
    assert_eq!(m("Class", "0xdeadBEEF"), Attribute::new(25, [0xde, 0xad, 0xbe, 0xef]));
    assert_eq!(m("Class", "0x"), Attribute::new(25, []));
    assert_eq!(m("Event-Timestamp", "1700000000"), Attribute::new(55, 1_700_000_000u32.to_be_bytes()));
    assert_eq!(m("Tunnel-Type", "VLAN"), Attribute::new(64, [0, 0, 0, 13]));
    assert_eq!(m("Tunnel-Type:1", "VLAN"), Attribute::new(64, [1, 0, 0, 13]));
    assert_eq!(m("Tunnel-Private-Group-Id", "100"), Attribute::new(81, *b"100"));
    assert_eq!(m("Tunnel-Private-Group-Id:2", "100"), Attribute::new(81, *b"\x02100"));
    // An untagged string that would read as a tag gets a zero tag.
    assert_eq!(m("Tunnel-Private-Group-Id", "\x05x"), Attribute::new(81, *b"\x00\x05x"));
}

#[test]
fn make_attribute_types_from_a_snippet() {
    let d = parse(
        "ATTRIBUTE B 200 byte\nATTRIBUTE S 201 short\nATTRIBUTE Q 202 integer64\nATTRIBUTE E 203 ether\n\
         VALUE B Five 5\nATTRIBUTE Internal 1000 string",
    )
    .unwrap();
    assert_eq!(d.make_attribute("B", "255").unwrap().value, [255]);
    assert_eq!(d.make_attribute("B", "five").unwrap().value, [5]);
    assert_eq!(d.make_attribute("S", "65535").unwrap().value, [255, 255]);
    assert_eq!(d.make_attribute("Q", "18446744073709551615").unwrap().value, [255; 8]);
    assert_eq!(d.make_attribute("E", "00:11:22:aa:BB:cc").unwrap().value, [0, 0x11, 0x22, 0xaa, 0xbb, 0xcc]);
    assert_eq!(d.make_attribute("E", "00-11-22-aa-bb-cc").unwrap().value, [0, 0x11, 0x22, 0xaa, 0xbb, 0xcc]);
    let reason = |n: &str, v: &str| match d.make_attribute(n, v) {
        Err(RadiusError::InvalidValue { attribute, reason }) => {
            assert_eq!(attribute, n);
            reason
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(reason("B", "256"), "byte must be a decimal number in 0..=255 or one of its VALUE names");
    assert_eq!(reason("S", "65536"), "short must be a decimal number in 0..=65535");
    assert!(reason("E", "00:11:22:aa:bb").starts_with("ether must be"));
    assert_eq!(reason("Internal", "x"), "number 1000 is internal to the dictionary, not a wire attribute");
}

#[test]
fn make_attribute_errors_name_the_attribute_and_the_rule_not_the_value() {
    let d = Dictionary::builtin();
    let err = |n: &str, v: &str| d.make_attribute(n, v).unwrap_err();
    assert_eq!(err("No-Such-Attr", "x"), RadiusError::UnknownAttribute { name: "No-Such-Attr".into() });
    let e = err("Session-Timeout", "sixty-secret");
    assert_eq!(e.to_string(), "attribute Session-Timeout: integer must be a decimal number in 0..=4294967295");
    assert!(!e.to_string().contains("sixty"));
    assert!(err("Session-Timeout", "4294967296").to_string().contains("0..=4294967295"));
    assert!(err("Session-Timeout", "-1").to_string().contains("Session-Timeout"));
    assert!(err("Service-Type", "Nope").to_string().contains("VALUE names"));
    assert!(err("Framed-IP-Address", "10.0.0.256").to_string().contains("dotted-quad"));
    assert!(err("NAS-IPv6-Address", "2001:db8::g").to_string().contains("IPv6 address"));
    assert!(err("Framed-IPv6-Prefix", "2001:db8::1/64").to_string().contains("bits set beyond"));
    assert!(err("Framed-IPv6-Prefix", "2001:db8::/129").to_string().contains("0..=128"));
    assert!(err("Framed-IPv6-Prefix", "2001:db8::").to_string().contains("'/'"));
    // octets without 0x are the text's bytes (as in FreeRADIUS)
    assert_eq!(d.make_attribute("Class", "corp-admins").unwrap().value, b"corp-admins".to_vec());
    assert!(err("Class", "0xabc").to_string().contains("pairs of hex"));
    assert!(err("Event-Timestamp", "yesterday").to_string().contains("Unix seconds"));
    assert!(err("Framed-Interface-Id", "0011:2233:4455").to_string().contains("ifid"));
    assert!(err("Tunnel-Type", "16777216").to_string().contains("0..=16777215"));
    assert!(err("Tunnel-Type:32", "VLAN").to_string().contains("0..=31"));
    assert!(err("Session-Timeout:1", "1").to_string().contains("has no tag"));
    let hidden = err("User-Password", "hunter2").to_string();
    assert!(hidden.contains("User-Password") && hidden.contains("encrypt=1") && !hidden.contains("hunter2"));
    assert!(err("MS-MPPE-Send-Key", "0x00").to_string().contains("encrypt=2"));
    assert!(err("Reply-Message", &"x".repeat(254)).to_string().contains("at most 253"));
    assert!(err("Fortinet-Group-Name", &"x".repeat(248)).to_string().contains("at most 247"));
}

#[test]
fn vendor_attributes_encode_as_vsa() {
    let d = Dictionary::builtin();
    let a = d.make_attribute("Fortinet-Group-Name", "vpn").unwrap();
    assert_eq!(a, Attribute::vendor_specific(12356, 1, b"vpn").unwrap());
    assert_eq!(a.value, [0, 0, 0x30, 0x44, 1, 5, b'v', b'p', b'n']);
    assert_eq!(d.make_attribute("Fortinet-Group-Name", &"x".repeat(247)).unwrap().value.len(), 253);
    let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
    p.attributes.push(a);
    p.attributes.push(d.make_attribute("Cisco-AVPair", "shell:priv-lvl=15").unwrap());
    let p = Packet::decode(&p.encode().unwrap()).unwrap();
    assert_eq!(p.vendor_attrs(12356).collect::<Vec<_>>(), vec![(1, &b"vpn"[..])]);
    assert_eq!(p.vendor_attrs(9).collect::<Vec<_>>(), vec![(1, &b"shell:priv-lvl=15"[..])]);
    // Other vendor formats.
    let wide = snippet().make_attribute("Wide-Thing", "ab").unwrap();
    assert_eq!(wide.value, [0, 0, 0x10, 0x92, 0x01, 0x2c, 0, 6, b'a', b'b']);
    assert_eq!(snippet().describe(&wide), "Wide-Thing = \"ab\"");
    let d4 =
        parse("VENDOR USR 429 format=4,0\nBEGIN-VENDOR USR\nATTRIBUTE USR-X 0x9001 integer\nEND-VENDOR USR").unwrap();
    let usr = d4.make_attribute("USR-X", "7").unwrap();
    assert_eq!(usr.value, [0, 0, 1, 0xad, 0, 0, 0x90, 1, 0, 0, 0, 7]);
    assert_eq!(d4.describe(&usr), "USR-X = 7");
}

#[test]
fn describe() {
    let d = Dictionary::builtin();
    let show = |n: &str, v: &str| d.describe(&d.make_attribute(n, v).unwrap());
    assert_eq!(show("Filter-Id", "admins"), r#"Filter-Id = "admins""#);
    assert_eq!(show("Fortinet-Group-Name", "vpn"), r#"Fortinet-Group-Name = "vpn""#);
    assert_eq!(show("Service-Type", "2"), "Service-Type = Framed-User");
    assert_eq!(show("Service-Type", "99"), "Service-Type = 99");
    assert_eq!(show("Session-Timeout", "3600"), "Session-Timeout = 3600");
    assert_eq!(show("Framed-IP-Address", "10.1.2.3"), "Framed-IP-Address = 10.1.2.3");
    assert_eq!(show("NAS-IPv6-Address", "2001:db8::1"), "NAS-IPv6-Address = 2001:db8::1");
    assert_eq!(show("Framed-IPv6-Prefix", "2001:db8:1::/48"), "Framed-IPv6-Prefix = 2001:db8:1::/48");
    assert_eq!(show("Framed-Interface-Id", "0011:2233:4455:6677"), "Framed-Interface-Id = 0011:2233:4455:6677");
    assert_eq!(show("Class", "0x0102"), "Class = 0x0102");
    assert_eq!(show("Event-Timestamp", "1700000000"), "Event-Timestamp = 1700000000");
    assert_eq!(show("Tunnel-Type", "VLAN"), "Tunnel-Type = VLAN");
    assert_eq!(show("Tunnel-Type:3", "VLAN"), "Tunnel-Type:3 = VLAN");
    assert_eq!(show("Tunnel-Private-Group-Id:1", "100"), r#"Tunnel-Private-Group-Id:1 = "100""#);
    assert_eq!(show("Tunnel-Private-Group-Id", "100"), r#"Tunnel-Private-Group-Id = "100""#);
    assert_eq!(show("Mikrotik-Wireless-Enc-Algo", "TKIP"), "Mikrotik-Wireless-Enc-Algo = TKIP");
    // Hidden values show only their length.
    assert_eq!(d.describe(&Attribute::new(2, [0x55; 16])), "User-Password = <hidden, 16 octets>");
    // Strings cannot forge log lines.
    assert_eq!(
        d.describe(&Attribute::new(18, b"a\"b\\c\nd\xff\x00\xe2\x80\xae".to_vec())),
        r#"Reply-Message = "a\"b\\c\x0ad\xff\x00\xe2\x80\xae""#
    );
    // Values that do not fit their type come out in hex.
    assert_eq!(d.describe(&Attribute::new(27, [1, 2, 3])), "Session-Timeout = 0x010203");
    assert_eq!(d.describe(&Attribute::new(8, [])), "Framed-IP-Address = 0x");
    // Unknown attributes, vendors and sub-attributes.
    assert_eq!(d.describe(&Attribute::new(17, [0xab])), "Attr-17 = 0xab");
    assert_eq!(d.describe(&Attribute::vendor_specific(99999, 1, b"x").unwrap()), "Attr-26 = 0x0001869f010378");
    assert_eq!(d.describe(&Attribute::vendor_specific(9, 200, b"x").unwrap()), "Attr-26.9.200 = 0x78");
    assert_eq!(d.describe(&Attribute::new(26, [0, 0, 0, 9, 1, 9, b'x'])), "Attr-26 = 0x00000009010978");
    assert_eq!(d.describe(&Attribute::new(26, [0, 0, 0, 9])), "Attr-26 = 0x00000009");
    assert_eq!(d.describe(&Attribute::new(26, [0, 9])), "Attr-26 = 0x0009");
    // Several sub-attributes in one VSA.
    assert_eq!(
        d.describe(&Attribute::new(26, [0, 0, 0, 9, 1, 3, b'a', 2, 3, b'b'].to_vec())),
        r#"Cisco-AVPair = "a", Cisco-NAS-Port = "b""#
    );
}

#[test]
fn make_attribute_and_describe_agree() {
    let d = Dictionary::builtin();
    for (name, text, shown) in [
        ("User-Name", "bob", "\"bob\""),
        ("NAS-Port-Type", "Ethernet", "Ethernet"),
        ("Acct-Status-Type", "interim-update", "Interim-Update"),
        ("Error-Cause", "503", "Session-Context-Not-Found"),
        ("Aruba-User-Vlan", "42", "42"),
        ("PaloAlto-Admin-Role", "superuser", "\"superuser\""),
        ("Juniper-Local-User-Name", "ops", "\"ops\""),
        ("MS-Primary-DNS-Server", "192.0.2.53", "192.0.2.53"),
    ] {
        let a = d.make_attribute(name, text).unwrap();
        let canonical = d.attribute_by_name(name).unwrap().name.clone();
        assert_eq!(d.describe(&a), format!("{canonical} = {shown}"));
    }
}

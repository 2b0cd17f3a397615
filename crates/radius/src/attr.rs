//! Attribute type numbers of the standard (non-vendor) RADIUS attributes.
//!
//! Numbers are the IANA RADIUS Attribute Types assignments, grouped by the
//! RFC that defined them. Only the one-octet attribute space is covered; the
//! RFC 6929 extended attributes (241..=246) are not decoded by this crate.
//! The dictionary in `dictionaries/` carries the same numbers with names and
//! types; a unit test keeps the two in agreement.

// RFC 2865: RADIUS.
/// User-Name (1), string.
pub const USER_NAME: u8 = 1;
/// User-Password (2), hidden with the shared secret (RFC 2865 §5.2).
pub const USER_PASSWORD: u8 = 2;
/// CHAP-Password (3): CHAP Ident octet followed by the 16-octet response.
pub const CHAP_PASSWORD: u8 = 3;
/// NAS-IP-Address (4), IPv4 address.
pub const NAS_IP_ADDRESS: u8 = 4;
/// NAS-Port (5), integer.
pub const NAS_PORT: u8 = 5;
/// Service-Type (6), enumerated integer.
pub const SERVICE_TYPE: u8 = 6;
/// Framed-Protocol (7), enumerated integer.
pub const FRAMED_PROTOCOL: u8 = 7;
/// Framed-IP-Address (8), IPv4 address.
pub const FRAMED_IP_ADDRESS: u8 = 8;
/// Framed-IP-Netmask (9), IPv4 address.
pub const FRAMED_IP_NETMASK: u8 = 9;
/// Framed-Routing (10), enumerated integer.
pub const FRAMED_ROUTING: u8 = 10;
/// Filter-Id (11), string.
pub const FILTER_ID: u8 = 11;
/// Framed-MTU (12), integer.
pub const FRAMED_MTU: u8 = 12;
/// Framed-Compression (13), enumerated integer.
pub const FRAMED_COMPRESSION: u8 = 13;
/// Login-IP-Host (14), IPv4 address.
pub const LOGIN_IP_HOST: u8 = 14;
/// Login-Service (15), enumerated integer.
pub const LOGIN_SERVICE: u8 = 15;
/// Login-TCP-Port (16), integer.
pub const LOGIN_TCP_PORT: u8 = 16;
/// Reply-Message (18), string shown to the user.
pub const REPLY_MESSAGE: u8 = 18;
/// Callback-Number (19), string.
pub const CALLBACK_NUMBER: u8 = 19;
/// Callback-Id (20), string.
pub const CALLBACK_ID: u8 = 20;
/// Framed-Route (22), string.
pub const FRAMED_ROUTE: u8 = 22;
/// Framed-IPX-Network (23), integer.
pub const FRAMED_IPX_NETWORK: u8 = 23;
/// State (24), opaque octets echoed by the client after an Access-Challenge.
pub const STATE: u8 = 24;
/// Class (25), opaque octets echoed in accounting.
pub const CLASS: u8 = 25;
/// Vendor-Specific (26).
pub const VENDOR_SPECIFIC: u8 = 26;
/// Session-Timeout (27), seconds.
pub const SESSION_TIMEOUT: u8 = 27;
/// Idle-Timeout (28), seconds.
pub const IDLE_TIMEOUT: u8 = 28;
/// Termination-Action (29), enumerated integer.
pub const TERMINATION_ACTION: u8 = 29;
/// Called-Station-Id (30), string.
pub const CALLED_STATION_ID: u8 = 30;
/// Calling-Station-Id (31), string.
pub const CALLING_STATION_ID: u8 = 31;
/// NAS-Identifier (32), string.
pub const NAS_IDENTIFIER: u8 = 32;
/// Proxy-State (33), octets a server must echo unchanged and in order.
pub const PROXY_STATE: u8 = 33;
/// Login-LAT-Service (34), string.
pub const LOGIN_LAT_SERVICE: u8 = 34;
/// Login-LAT-Node (35), string.
pub const LOGIN_LAT_NODE: u8 = 35;
/// Login-LAT-Group (36), octets.
pub const LOGIN_LAT_GROUP: u8 = 36;
/// Framed-AppleTalk-Link (37), integer.
pub const FRAMED_APPLETALK_LINK: u8 = 37;
/// Framed-AppleTalk-Network (38), integer.
pub const FRAMED_APPLETALK_NETWORK: u8 = 38;
/// Framed-AppleTalk-Zone (39), string.
pub const FRAMED_APPLETALK_ZONE: u8 = 39;
/// CHAP-Challenge (60), octets.
pub const CHAP_CHALLENGE: u8 = 60;
/// NAS-Port-Type (61), enumerated integer.
pub const NAS_PORT_TYPE: u8 = 61;
/// Port-Limit (62), integer.
pub const PORT_LIMIT: u8 = 62;
/// Login-LAT-Port (63), string.
pub const LOGIN_LAT_PORT: u8 = 63;

// RFC 2866: RADIUS Accounting.
/// Acct-Status-Type (40), enumerated integer.
pub const ACCT_STATUS_TYPE: u8 = 40;
/// Acct-Delay-Time (41), seconds.
pub const ACCT_DELAY_TIME: u8 = 41;
/// Acct-Input-Octets (42), integer.
pub const ACCT_INPUT_OCTETS: u8 = 42;
/// Acct-Output-Octets (43), integer.
pub const ACCT_OUTPUT_OCTETS: u8 = 43;
/// Acct-Session-Id (44), string.
pub const ACCT_SESSION_ID: u8 = 44;
/// Acct-Authentic (45), enumerated integer.
pub const ACCT_AUTHENTIC: u8 = 45;
/// Acct-Session-Time (46), seconds.
pub const ACCT_SESSION_TIME: u8 = 46;
/// Acct-Input-Packets (47), integer.
pub const ACCT_INPUT_PACKETS: u8 = 47;
/// Acct-Output-Packets (48), integer.
pub const ACCT_OUTPUT_PACKETS: u8 = 48;
/// Acct-Terminate-Cause (49), enumerated integer.
pub const ACCT_TERMINATE_CAUSE: u8 = 49;
/// Acct-Multi-Session-Id (50), string.
pub const ACCT_MULTI_SESSION_ID: u8 = 50;
/// Acct-Link-Count (51), integer.
pub const ACCT_LINK_COUNT: u8 = 51;

// RFC 2867: tunnel accounting.
/// Acct-Tunnel-Connection (68), string.
pub const ACCT_TUNNEL_CONNECTION: u8 = 68;
/// Acct-Tunnel-Packets-Lost (86), integer.
pub const ACCT_TUNNEL_PACKETS_LOST: u8 = 86;

// RFC 2868: tunnel attributes (all tagged), used for VLAN assignment with
// RFC 3580.
/// Tunnel-Type (64), tagged enumerated integer.
pub const TUNNEL_TYPE: u8 = 64;
/// Tunnel-Medium-Type (65), tagged enumerated integer.
pub const TUNNEL_MEDIUM_TYPE: u8 = 65;
/// Tunnel-Client-Endpoint (66), tagged string.
pub const TUNNEL_CLIENT_ENDPOINT: u8 = 66;
/// Tunnel-Server-Endpoint (67), tagged string.
pub const TUNNEL_SERVER_ENDPOINT: u8 = 67;
/// Tunnel-Password (69), tagged, salted and hidden (RFC 2868 §3.5).
pub const TUNNEL_PASSWORD: u8 = 69;
/// Tunnel-Private-Group-Id (81), tagged string (the VLAN with RFC 3580).
pub const TUNNEL_PRIVATE_GROUP_ID: u8 = 81;
/// Tunnel-Assignment-Id (82), tagged string.
pub const TUNNEL_ASSIGNMENT_ID: u8 = 82;
/// Tunnel-Preference (83), tagged integer.
pub const TUNNEL_PREFERENCE: u8 = 83;
/// Tunnel-Client-Auth-Id (90), tagged string.
pub const TUNNEL_CLIENT_AUTH_ID: u8 = 90;
/// Tunnel-Server-Auth-Id (91), tagged string.
pub const TUNNEL_SERVER_AUTH_ID: u8 = 91;

// RFC 2869: RADIUS Extensions.
/// Acct-Input-Gigawords (52), integer.
pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
/// Acct-Output-Gigawords (53), integer.
pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
/// Event-Timestamp (55), seconds since the Unix epoch.
pub const EVENT_TIMESTAMP: u8 = 55;
/// ARAP-Password (70), octets.
pub const ARAP_PASSWORD: u8 = 70;
/// ARAP-Features (71), octets.
pub const ARAP_FEATURES: u8 = 71;
/// ARAP-Zone-Access (72), enumerated integer.
pub const ARAP_ZONE_ACCESS: u8 = 72;
/// ARAP-Security (73), integer.
pub const ARAP_SECURITY: u8 = 73;
/// ARAP-Security-Data (74), string.
pub const ARAP_SECURITY_DATA: u8 = 74;
/// Password-Retry (75), integer.
pub const PASSWORD_RETRY: u8 = 75;
/// Prompt (76), enumerated integer: echo the user's response or not.
pub const PROMPT: u8 = 76;
/// Connect-Info (77), string.
pub const CONNECT_INFO: u8 = 77;
/// Configuration-Token (78), string.
pub const CONFIGURATION_TOKEN: u8 = 78;
/// EAP-Message (79), octets (RFC 3579).
pub const EAP_MESSAGE: u8 = 79;
/// Message-Authenticator (80), HMAC-MD5 over the packet (RFC 3579 §3.2).
pub const MESSAGE_AUTHENTICATOR: u8 = 80;
/// ARAP-Challenge-Response (84), octets.
pub const ARAP_CHALLENGE_RESPONSE: u8 = 84;
/// Acct-Interim-Interval (85), seconds.
pub const ACCT_INTERIM_INTERVAL: u8 = 85;
/// NAS-Port-Id (87), string.
pub const NAS_PORT_ID: u8 = 87;
/// Framed-Pool (88), string.
pub const FRAMED_POOL: u8 = 88;

// RFC 4372.
/// Chargeable-User-Identity (89), octets.
pub const CHARGEABLE_USER_IDENTITY: u8 = 89;

// RFC 3162: RADIUS and IPv6.
/// NAS-IPv6-Address (95), IPv6 address.
pub const NAS_IPV6_ADDRESS: u8 = 95;
/// Framed-Interface-Id (96), 8-octet interface identifier.
pub const FRAMED_INTERFACE_ID: u8 = 96;
/// Framed-IPv6-Prefix (97), IPv6 prefix.
pub const FRAMED_IPV6_PREFIX: u8 = 97;
/// Login-IPv6-Host (98), IPv6 address.
pub const LOGIN_IPV6_HOST: u8 = 98;
/// Framed-IPv6-Route (99), string.
pub const FRAMED_IPV6_ROUTE: u8 = 99;
/// Framed-IPv6-Pool (100), string.
pub const FRAMED_IPV6_POOL: u8 = 100;

// RFC 5176 (and its predecessor RFC 3576): Dynamic Authorization.
/// Error-Cause (101), enumerated integer.
pub const ERROR_CAUSE: u8 = 101;

// RFC 4072: EAP application.
/// EAP-Key-Name (102), octets.
pub const EAP_KEY_NAME: u8 = 102;

// RFC 4675: VLAN and priority attributes.
/// Egress-VLANID (56), integer.
pub const EGRESS_VLANID: u8 = 56;
/// Ingress-Filters (57), enumerated integer.
pub const INGRESS_FILTERS: u8 = 57;
/// Egress-VLAN-Name (58), string.
pub const EGRESS_VLAN_NAME: u8 = 58;
/// User-Priority-Table (59), octets.
pub const USER_PRIORITY_TABLE: u8 = 59;

// RFC 4818.
/// Delegated-IPv6-Prefix (123), IPv6 prefix.
pub const DELEGATED_IPV6_PREFIX: u8 = 123;

// RFC 6911: IPv6 access.
/// Framed-IPv6-Address (168), IPv6 address.
pub const FRAMED_IPV6_ADDRESS: u8 = 168;
/// DNS-Server-IPv6-Address (169), IPv6 address.
pub const DNS_SERVER_IPV6_ADDRESS: u8 = 169;
/// Route-IPv6-Information (170), IPv6 prefix.
pub const ROUTE_IPV6_INFORMATION: u8 = 170;
/// Delegated-IPv6-Prefix-Pool (171), string.
pub const DELEGATED_IPV6_PREFIX_POOL: u8 = 171;
/// Stateful-IPv6-Address-Pool (172), string.
pub const STATEFUL_IPV6_ADDRESS_POOL: u8 = 172;

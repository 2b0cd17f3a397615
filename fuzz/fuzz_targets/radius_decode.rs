//! Fuzzes everything a RADIUS server does with a datagram from anyone:
//! decoding, authenticator checks, password recovery and log rendering.
//! Besides "never panics", it checks that whatever decodes re-encodes to
//! the same bytes (up to the Length field) and decodes to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_radius::{Dictionary, Packet, unhide_password, verify_request, verify_response};

const SECRET: &[u8] = b"xyzzy5461";

fuzz_target!(|data: &[u8]| {
    let _ = verify_request(data, SECRET);
    let request_authenticator: [u8; 16] = data.get(4..20).and_then(|a| a.try_into().ok()).unwrap_or([0; 16]);
    let _ = verify_response(data, &request_authenticator, SECRET);

    let Ok(packet) = Packet::decode(data) else { return };
    let length = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let bytes = packet.encode().expect("a decoded packet re-encodes");
    assert_eq!(bytes, data[..length], "re-encoding changed the bytes");
    assert_eq!(Packet::decode(&bytes).expect("re-encoded packet decodes"), packet);

    let dictionary = Dictionary::builtin();
    for attribute in &packet.attributes {
        let line = dictionary.describe(attribute);
        assert!(!line.contains('\n'), "a description spans lines");
    }
    for vendor in [9, 311, 12356] {
        let _ = packet.vendor_attrs(vendor).count();
    }
    if let Some(hidden) = packet.attr(tessera_radius::attr::USER_PASSWORD) {
        let _ = unhide_password(SECRET, &packet.authenticator, hidden);
    }
    // Answering it must work for any request that decodes.
    let reply = Packet::response_to(&packet, tessera_radius::Code::AccessReject);
    if let Ok(answer) = reply.encode_response(&packet, SECRET, true) {
        assert!(verify_response(&answer, &packet.authenticator, SECRET).is_ok());
    }
});

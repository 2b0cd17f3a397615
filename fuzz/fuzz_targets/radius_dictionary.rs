//! Fuzzes the dictionary parser with arbitrary text, and `make_attribute`
//! with arbitrary `name = value` lines against the built-in dictionary.
//! Every `$INCLUDE` resolves to a file that includes itself again, which
//! exercises the depth bound without letting the input fan out (an input
//! that included *itself* N times would cost N^8 parses).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_radius::Dictionary;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let include = |_: &str| Ok("ATTRIBUTE Included 1 string\n$INCLUDE again\n".to_owned());
    if let Ok(d) = Dictionary::parse(text, "fuzz", &include) {
        for def in d.attributes() {
            let _ = d.make_attribute(&def.name, "1");
        }
    }
    let builtin = Dictionary::builtin();
    for line in text.lines() {
        if let Some((name, value)) = line.split_once('=')
            && let Ok(attribute) = builtin.make_attribute(name.trim(), value.trim())
        {
            assert!(attribute.value.len() <= 253);
            let _ = builtin.describe(&attribute);
        }
    }
});

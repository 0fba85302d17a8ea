//! `delta_codec::decode` on arbitrary bytes: never panics; whatever decodes
//! re-encodes, and the re-encoding decodes to the same delta and has the
//! length the first decode consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmsb_core::delta_codec;

fuzz_target!(|data: &[u8]| {
    let Ok((d, used)) = delta_codec::decode(data) else {
        return;
    };
    assert!(used <= data.len());
    let again = delta_codec::encode(&d).expect("a decoded delta must re-encode");
    assert_eq!(again.len(), used, "re-encoding changed the length");
    assert_eq!(again.len(), delta_codec::encoded_len(&d));
    let (back, used2) = delta_codec::decode(&again).expect("a re-encoded delta must decode");
    assert_eq!(used2, again.len());
    assert_eq!(back, d, "decode(encode(d)) != d");
});

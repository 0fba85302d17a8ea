//! The delta codec round-trips every valid delta exactly, and decoding
//! arbitrary bytes, truncations or mutations of a valid encoding never panics:
//! it returns a valid delta or a `Corruption` error.

mod common;

use common::*;
use mmsb_core::delta_codec::{decode, encode, encoded_len};
use mmsb_core::{Delta, ErrorCode};
use proptest::prelude::*;

fn arb_full_delta() -> impl Strategy<Value = Delta> {
    (
        arb_range(700),
        arb_shape(),
        any::<u64>(),
        "[a-z/._-]{0,24}",
        prop::option::of(prop_oneof![
            Just("{}".to_owned()),
            Just(r#"{"why":"tick","n":[1,2.5,null]}"#.to_owned()),
            "[1-9][0-9]{0,11}",
            "\"[a-z ]{0,20}\"",
        ]),
        prop::option::of(any::<u64>()),
        any::<u64>(),
        1u64..u64::MAX,
    )
        .prop_map(
            |((_, off, len), shape, seed, source, intent, epoch, ts, page)| {
                let mut d = make_delta(shape, off, len, seed).with_source(source);
                d.intent = intent;
                d.expected_epoch = epoch;
                d.timestamp_ns = ts;
                d.page = mmsb_core::PageId(page);
                d
            },
        )
}

fn check_decode_total(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes) {
        Ok((d, used)) => {
            prop_assert!(used <= bytes.len());
            prop_assert!(d.validate_shape().is_ok());
        }
        Err(e) => prop_assert_eq!(e.code, ErrorCode::Corruption),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn valid_deltas_round_trip(d in arb_full_delta(), trailer in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = encode(&d).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(bytes.len(), encoded_len(&d));
        let n = bytes.len();
        bytes.extend_from_slice(&trailer);
        let (back, used) = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(used, n);
        prop_assert_eq!(back, d);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_decode_total(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(
        d in arb_full_delta(),
        tail in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = encode(&d).map_err(|e| TestCaseError::fail(e.to_string()))?;
        bytes.truncate(64);
        bytes.extend_from_slice(&tail);
        check_decode_total(&bytes)?;
    }

    #[test]
    fn mutated_encodings_never_panic(
        d in arb_full_delta(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = encode(&d).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] ^= v;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check_decode_total(&bytes)?;
    }
}

//! The README's Rust example: create a page, apply dense, masked and sparse
//! deltas, merge two deltas, encode one for the log.
//!
//! Run: `cargo run --example quickstart -p mmsb-core` (in `rust/`).

use mmsb_core::{delta_codec, delta_merge, mask, Delta, PageLocation, PageStore};

fn main() -> mmsb_core::Result<()> {
    let mut store = PageStore::new();
    let page = store.create_page(4096, PageLocation::Cpu)?;

    // Dense: write every byte of the range.
    store.apply_delta(&Delta::dense(page, 0, b"hello, world".to_vec()).with_source("example"))?;

    // Masked: write only where the mask bit is set (here: bytes 0 and 7 of the range).
    let m = mask::from_flags(&[true, false, false, false, false, false, false, true]);
    store.apply_delta(&Delta::masked(page, 0, b"J-----W!".to_vec(), m))?;

    // Sparse: the payload holds only the masked bytes.
    let m = mask::from_flags(&[false, true, false, true]);
    let out = store.apply_delta(&Delta::sparse(page, 100, 4, m, vec![0xAA, 0xBB]))?;
    println!("epoch after three deltas: {}", out.epoch);

    // Compare-and-set: applies only if the page is still at the expected epoch.
    let stale = Delta::dense(page, 0, vec![0]).with_expected_epoch(0);
    let err = store.apply_delta(&stale).unwrap_err();
    println!(
        "stale compare-and-set: {err} (retryable: {})",
        err.is_retryable()
    );

    // Merge: one delta equivalent to applying a, then b.
    let a = Delta::dense(page, 200, vec![1, 2, 3]);
    let b = Delta::dense(page, 202, vec![9, 9]);
    let ab = delta_merge::merge(&a, &b)?;
    store.apply_delta(&ab)?;

    // Encode for the log, and back.
    let bytes = delta_codec::encode(&ab)?;
    let (back, _) = delta_codec::decode(&bytes)?;
    assert_eq!(back, ab);

    let data = store.read(page)?;
    println!("{:?}", String::from_utf8_lossy(&data[..12]));
    println!("{:?}", &data[200..205]);
    Ok(())
}

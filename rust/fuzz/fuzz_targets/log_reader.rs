//! Arbitrary bytes as the log of a data directory, opened through the public
//! API (`Store::open_with_vfs` over the in-memory `FaultFs`, which runs
//! recovery, the torn-tail cut and a fresh segment), and as a frame stream
//! for `tlog_frame::parse`. Nothing may panic; bad input is an error.
//!
//! The first byte steers the input past the checks a mutator cannot solve:
//! bit 0 prepends a valid segment header, bit 1 rewrites the CRC32C of every
//! frame whose length fits so the record decoder and apply path are reached,
//! bit 2 splits the rest into two segments, bit 3 opens accepting corruption.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmsb_core::fault_fs::FaultFs;
use mmsb_core::tlog_frame::{self, FRAME_HEADER_LEN};
use mmsb_core::tlog_segment::{self, SegmentHeader, HEADER_LEN};
use mmsb_core::{Durability, RecoveryOptions, Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;

/// Recomputes the checksum of every frame in `buf[from..]` whose stated length fits.
fn fix_crcs(buf: &mut [u8], mut pos: usize) {
    while pos + FRAME_HEADER_LEN <= buf.len() {
        let len = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let end = match (pos + FRAME_HEADER_LEN).checked_add(len) {
            Some(e) if e <= buf.len() => e,
            _ => return,
        };
        let crc = crc32c(&buf[pos + 4..end]);
        buf[pos..pos + 4].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

/// CRC32C (Castagnoli), bitwise: the fuzz crate needs no extra dependency.
fn crc32c(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= u32::from(x);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn segment(number: u64, first_lsn: u64, body: &[u8], header: bool, fix: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + body.len());
    if header {
        v.extend_from_slice(&SegmentHeader { number, first_lsn }.encode());
    }
    v.extend_from_slice(body);
    if fix {
        fix_crcs(&mut v, if header { HEADER_LEN } else { 0 });
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (header, fix, split, accept) = (mode & 1 != 0, mode & 2 != 0, mode & 4 != 0, mode & 8 != 0);

    // The frame parser alone, on the raw stream.
    let mut stream = rest.to_vec();
    if fix {
        fix_crcs(&mut stream, 0);
    }
    let mut pos = 0;
    while pos < stream.len() {
        match tlog_frame::parse(&stream[pos..]) {
            Ok(f) => {
                let _ = f.records();
                pos += f.stored_len();
            }
            Err(_) => break,
        }
    }

    // A data directory holding the bytes as its log.
    let fs = FaultFs::new();
    let dir = Path::new("/fuzz");
    let log = dir.join("log");
    if split && rest.len() >= 2 {
        let k = usize::from(rest[0]) % rest.len();
        let (a, b) = rest[1..].split_at(k.min(rest.len() - 1));
        fs.put(&tlog_segment::path(&log, 1), segment(1, 1, a, header, fix));
        // The second segment starts where a clean first one would end: unknown, so LSN 2.
        fs.put(&tlog_segment::path(&log, 2), segment(2, 2, b, header, fix));
    } else {
        fs.put(
            &tlog_segment::path(&log, 1),
            segment(1, 1, rest, header, fix),
        );
    }
    let opts = StoreOptions {
        durability: Durability::Immediate,
        recovery: RecoveryOptions {
            recover_past_corruption: accept,
        },
        ..StoreOptions::default()
    };
    if let Ok(store) = Store::open_with_vfs(Arc::new(fs.clone()), dir, opts) {
        // A store that opened is usable: it takes a commit and reopens to the same LSN.
        let lsn = store.lsn();
        let r = store.commit(vec![mmsb_core::Op::CreatePage {
            size: 8,
            location: mmsb_core::PageLocation::Cpu,
        }]);
        assert!(r.is_ok(), "a recovered store refused a commit: {r:?}");
        store.close().expect("close");
        let again = Store::open_with_vfs(Arc::new(fs), dir, opts).expect("reopen after recovery");
        assert_eq!(again.lsn(), lsn + 1, "reopen lost or invented commits");
    }
});

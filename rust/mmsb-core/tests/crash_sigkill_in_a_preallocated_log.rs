//! Crash consistency of the preallocated log: a child process commits large
//! deltas under immediate durability (so its segments grow past the point
//! where the writer zero-fills ahead) and reports each acknowledged LSN; the
//! parent kills it with SIGKILL at a random moment, recovers, and checks that
//! every acknowledged commit is there, that the zero tail was read as the end
//! of the log, and that the page equals a reference model rebuilt from scratch
//! for the recovered LSN. Each data directory goes through several rounds, so
//! recovery also runs over older segments that keep their zero tails.
//! Iterations: `MMSB_PREALLOC_CRASH_ITERS` (default 12).

use mmsb_core::tlog_reader::LogEnd;
use mmsb_core::vfs::RealVfs;
use mmsb_core::{Delta, Op, PageId, PageLocation, Store, StoreOptions};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const PAGE: usize = 64 << 10;
const DELTA: usize = 30_000;
const ROUNDS_PER_DIR: u64 = 4;

/// The delta commit `lsn` (>= 2) writes: (offset, bytes). Commit 1 creates the page.
fn delta_of(lsn: u64) -> (usize, Vec<u8>) {
    let off = (lsn as usize * 7919) % (PAGE - DELTA);
    let bytes = (0..DELTA)
        .map(|i| (lsn as usize * 31 + i * 7) as u8)
        .collect();
    (off, bytes)
}

/// The page after commit `lsn`, from scratch.
fn model_at(lsn: u64) -> Vec<u8> {
    let mut page = vec![0u8; PAGE];
    for l in 2..=lsn {
        let (off, b) = delta_of(l);
        page[off..off + DELTA].copy_from_slice(&b);
    }
    page
}

/// The child: does its work only when the parent sets the variable.
#[test]
fn prealloc_crash_child_process() {
    let Ok(dir) = std::env::var("MMSB_PREALLOC_CRASH_CHILD") else {
        return;
    };
    let store = Store::open(Path::new(&dir), StoreOptions::default()).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "START {}", store.lsn()).unwrap();
    out.flush().unwrap();
    loop {
        let lsn = store.lsn() + 1;
        let ops = if lsn == 1 {
            vec![Op::CreatePage {
                size: PAGE as u64,
                location: PageLocation::Cpu,
            }]
        } else {
            let (off, b) = delta_of(lsn);
            vec![Op::Delta(Delta::dense(PageId(1), off as u64, b))]
        };
        let r = store.commit(ops).unwrap();
        writeln!(out, "ACK {}", r.lsn).unwrap();
        out.flush().unwrap();
    }
}

fn after(line: &str, tag: &str) -> Option<u64> {
    line.find(tag)
        .and_then(|i| line[i + tag.len()..].trim().parse().ok())
}

fn tmp_root() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

#[test]
fn sigkill_in_a_preallocated_segment_loses_no_acknowledged_commit() {
    let iters: u64 = std::env::var("MMSB_PREALLOC_CRASH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let exe = std::env::current_exe().unwrap();
    let root = tmp_root();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
    for it in 0..iters {
        let dir = root.path().join(format!("d{}", it / ROUNDS_PER_DIR));
        let mut child = Command::new(&exe)
            .args([
                "prealloc_crash_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MMSB_PREALLOC_CRASH_CHILD", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // 35 commits of 30 KB fill the first MiB, after which the writer preallocates.
        let kill_after: u64 = rng.gen_range(40..120);
        let mut acked = 0;
        let mut start = None;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = after(&line, "ACK ") {
                acked = n;
                if start.is_some_and(|s| acked >= s + kill_after) {
                    break;
                }
            } else if let Some(n) = after(&line, "START ") {
                start = Some(n);
                acked = n;
            }
        }
        assert!(start.is_some(), "child never started (iteration {it})");
        std::thread::sleep(std::time::Duration::from_micros(rng.gen_range(0..300)));
        child.kill().unwrap();
        child.wait().unwrap();
        for line in lines {
            if let Some(n) = after(&line.unwrap(), "ACK ") {
                acked = acked.max(n);
            }
        }
        let s = Store::open(&dir, StoreOptions::default())
            .unwrap_or_else(|e| panic!("iteration {it}: recovery failed: {e}"));
        let lsn = s.lsn();
        assert!(
            lsn >= acked,
            "iteration {it}: acknowledged {acked}, recovered {lsn}"
        );
        assert!(
            lsn <= acked + 1,
            "iteration {it}: LSN {lsn} past the last commit"
        );
        assert!(
            s.read(PageId(1)).unwrap() == model_at(lsn),
            "iteration {it}: the page differs from the model at LSN {lsn}"
        );
        s.close().unwrap();
    }
    // The segments the rounds left behind: the older ones keep zero tails.
    let scan =
        mmsb_core::tlog_reader::scan(&RealVfs, &root.path().join("d0").join("log"), |_, _| Ok(()))
            .unwrap();
    assert_eq!(scan.end, LogEnd::Clean);
    assert!(
        iters < ROUNDS_PER_DIR || scan.segments.iter().any(|g| g.len > g.good_len),
        "no segment was preallocated: the test does not exercise what it is for"
    );
}

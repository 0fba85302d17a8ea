//! Crash consistency: a child process commits under immediate durability and
//! reports each acknowledged LSN on stdout; the parent kills it with SIGKILL at
//! a random moment, recovers, and checks that every acknowledged commit is
//! there, that no partial commit is visible, and that the pages equal the
//! reference model replayed to the recovered LSN. Each data directory goes
//! through several kill/recover rounds (recovery after recovery, torn tails
//! cut and written past). Iterations: `MMSB_CRASH_ITERS` (default 200).

mod workload;

use mmsb_core::{Store, StoreOptions};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;
use workload::{assert_same_state, model_at, workload};

const WORKLOAD: usize = 400;
const ROUNDS_PER_DIR: u64 = 4;

fn opts() -> StoreOptions {
    StoreOptions {
        segment_bytes: 8192,
        compression: true,
        ..StoreOptions::default()
    }
}

/// The child: not a test of its own; does its work only when the parent sets the variables.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var("MMSB_CRASH_CHILD") else {
        return;
    };
    let seed: u64 = std::env::var("MMSB_CRASH_SEED").unwrap().parse().unwrap();
    let w = workload(seed, WORKLOAD);
    let store = Store::open(Path::new(&dir), opts()).unwrap();
    let start = store.lsn() as usize;
    let mut out = std::io::stdout().lock();
    writeln!(out, "START {start}").unwrap();
    out.flush().unwrap();
    for (i, c) in w[start..].iter().enumerate() {
        let r = store.commit(c.clone()).unwrap();
        writeln!(out, "ACK {}", r.lsn).unwrap();
        out.flush().unwrap();
        if (start + i + 1).is_multiple_of(40) {
            store.checkpoint().unwrap();
        }
    }
    std::process::exit(0);
}

/// The text after `tag` in `line` (libtest may print its own words first on the line).
fn after(line: &str, tag: &str) -> Option<String> {
    line.find(tag)
        .map(|i| line[i + tag.len()..].trim().to_owned())
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
fn sigkill_at_random_moments_loses_no_acknowledged_commit() {
    let iters: u64 = std::env::var("MMSB_CRASH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let exe = std::env::current_exe().unwrap();
    let root = tmp_root();
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("MMSB_CRASH_SEED0")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0xC0FFEE),
    );
    let t0 = Instant::now();
    let mut torn = 0;
    let mut total_acks = 0;
    let mut workloads = std::collections::HashMap::new();
    for it in 0..iters {
        let seed = it / ROUNDS_PER_DIR;
        let dir = root.path().join(format!("d{seed}"));
        let w = workloads
            .entry(seed)
            .or_insert_with(|| workload(seed, WORKLOAD));
        let mut child = Command::new(&exe)
            .args([
                "crash_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MMSB_CRASH_CHILD", &dir)
            .env("MMSB_CRASH_SEED", seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut kill_after: u64 = rng.gen_range(0..60);
        let extra_us: u64 = rng.gen_range(0..400);
        let mut acked = 0u64;
        let mut started = false;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = after(&line, "ACK ") {
                acked = n.parse().unwrap();
                total_acks += 1;
                if acked >= kill_after {
                    break;
                }
            } else if let Some(n) = after(&line, "START ") {
                started = true;
                acked = acked.max(n.parse().unwrap());
                if kill_after == 0 {
                    break;
                }
                kill_after += acked;
            }
        }
        assert!(started, "child never started (iteration {it})");
        std::thread::sleep(std::time::Duration::from_micros(extra_us));
        child.kill().unwrap();
        child.wait().unwrap();
        // Any ACK lines still in the pipe were acknowledged before the kill too.
        for line in lines {
            if let Some(n) = after(&line.unwrap(), "ACK ") {
                acked = acked.max(n.parse().unwrap());
            }
        }
        let s = Store::open(&dir, opts())
            .unwrap_or_else(|e| panic!("iteration {it}: recovery failed: {e}"));
        let lsn = s.lsn();
        assert!(
            lsn >= acked,
            "iteration {it}: acknowledged LSN {acked} lost, recovered {lsn}"
        );
        assert!(
            lsn <= acked + 1,
            "iteration {it}: LSN {lsn} past the last commit"
        );
        if s.recovery_report().torn_tail.is_some() {
            torn += 1;
        }
        s.read_with(|st| assert_same_state(st, &model_at(w, lsn), &format!("iteration {it}")));
        s.close().unwrap();
    }
    eprintln!(
        "crash test: {iters} kills, {total_acks} acknowledged commits, {torn} torn tails cut, {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

//! A SIGKILL during concurrent transactions recovers to a consistent bank.
//!
//! A child process runs bank transfers on 8 threads under immediate
//! durability and prints each acknowledged commit's LSN; the parent kills it
//! with SIGKILL at a random moment, reopens the store, and checks: every
//! acknowledged commit survived, the total is preserved, and the recovered
//! balances equal the serial replay of the recovered log (`bank::replay_log`,
//! which also checks each transfer could pay in LSN order and that no update
//! was lost). Each data directory goes through several kill/recover rounds.
//! Iterations: `MMSB_TXN_CRASH_ITERS` (default 24).

mod bank;

use bank::{env_or, replay_log, Bank, Rng};
use mmsb_core::{Store, StoreOptions};
use rand::{Rng as _, SeedableRng};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

const BANK: Bank = Bank { accounts: 256 };
const THREADS: u64 = 8;
const ROUNDS_PER_DIR: u64 = 3;

/// The child: not a test of its own; works only when the parent sets the variables.
#[test]
fn txn_crash_child_process() {
    let Ok(dir) = std::env::var("MMSB_TXN_CRASH_CHILD") else {
        return;
    };
    let round = env_or("MMSB_TXN_CRASH_ROUND", 0);
    let store = Store::open(Path::new(&dir), StoreOptions::default()).unwrap();
    if store.lsn() == 0 {
        BANK.open_accounts(&store);
    }
    let out = Mutex::new(std::io::stdout());
    {
        let mut o = out.lock().unwrap();
        writeln!(o, "START {}", store.lsn()).unwrap();
        o.flush().unwrap();
    }
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (store, out) = (&store, &out);
            s.spawn(move || {
                let mut rng = Rng::new(round * 1000 + t + 1);
                for seq in 0.. {
                    let (from, to) = (rng.below(BANK.accounts), rng.below(BANK.accounts));
                    let amount = 1 + rng.below(500) as i64;
                    let c = store
                        .with_transaction(|txn| {
                            BANK.transfer(txn, (t, round << 32 | seq), from, to, amount)
                        })
                        .unwrap();
                    if c.value {
                        let mut o = out.lock().unwrap();
                        writeln!(o, "ACK {}", c.receipt.lsn).unwrap();
                        o.flush().unwrap();
                    }
                }
            });
        }
    });
}

fn after(line: &str, tag: &str) -> Option<u64> {
    line.find(tag)
        .and_then(|i| line[i + tag.len()..].trim().parse().ok())
}

#[test]
fn sigkill_during_transactions_recovers_a_consistent_bank() {
    let iters = env_or("MMSB_TXN_CRASH_ITERS", 24);
    let exe = std::env::current_exe().unwrap();
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7A11);
    let mut total_acks = 0;
    for it in 0..iters {
        let dir = root.path().join(format!("d{}", it / ROUNDS_PER_DIR));
        let mut child = Command::new(&exe)
            .args([
                "txn_crash_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MMSB_TXN_CRASH_CHILD", &dir)
            .env("MMSB_TXN_CRASH_ROUND", it.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let kill_after: u64 = rng.gen_range(0..300);
        let extra_us: u64 = rng.gen_range(0..2000);
        let (mut acked, mut acks, mut started) = (0u64, 0u64, false);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = after(&line, "ACK ") {
                acked = acked.max(n);
                acks += 1;
                if acks >= kill_after {
                    break;
                }
            } else if let Some(n) = after(&line, "START ") {
                started = true;
                acked = acked.max(n);
                if kill_after == 0 {
                    break;
                }
            }
        }
        assert!(started, "child never started (iteration {it})");
        std::thread::sleep(std::time::Duration::from_micros(extra_us));
        child.kill().unwrap();
        child.wait().unwrap();
        for line in lines {
            if let Some(n) = after(&line.unwrap(), "ACK ") {
                acked = acked.max(n);
                acks += 1;
            }
        }
        total_acks += acks;
        let s = Store::open(&dir, StoreOptions::default())
            .unwrap_or_else(|e| panic!("iteration {it}: recovery failed: {e}"));
        let lsn = s.lsn();
        assert!(
            lsn >= acked,
            "iteration {it}: acknowledged LSN {acked} lost, recovered {lsn}"
        );
        let snap = s.snapshot_of(&BANK.page_ids()).unwrap();
        let balances = BANK.balances(|p| snap.read(p).unwrap());
        assert_eq!(
            balances.iter().sum::<i64>(),
            BANK.total(),
            "iteration {it}: the recovered total is wrong"
        );
        let r = replay_log(BANK, &dir);
        assert_eq!(r.last_lsn, lsn, "iteration {it}");
        assert_eq!(
            balances, r.balances,
            "iteration {it}: recovered state differs from the serial replay"
        );
        s.close().unwrap();
    }
    eprintln!("txn crash test: {iters} kills, {total_acks} acknowledged transfers");
}

//! `mmsb bench txn`: optimistic transactions against a global lock and SQLite.
//!
//! The workload is a bank: `i64` balances, 16 accounts to a 128-byte page. A
//! transfer reads two random accounts and, if the source can pay, writes both
//! — as an MMSB transaction ([`Store::with_transaction`], conflicts retried
//! with backoff), and the same logic on each yardstick. Two contention levels:
//! *low*, 65 536 accounts on 4 096 pages (concurrent transfers rarely share a
//! page), and *high*, 16 accounts on one page (every pair of concurrent
//! transfers conflicts). Each case runs for `--seconds` at 1, 2, 4 and 8
//! threads, alternating MMSB and its yardstick `--reps` times and keeping the
//! best of each; every run checks afterwards that the total is preserved.
//!
//! Cases:
//!
//! * `mem/<low|high>/t<T>`: transactions/s of an in-memory store
//!   ([`Durability::None`]). Yardstick: the same transfers on a
//!   `Mutex<HashMap<u64, i64>>` (one global lock, no log): the floor of
//!   synchronisation cost, a ceiling MMSB cannot beat at one thread.
//! * `log/<low|high>/t<T>`: transactions/s of a store that logs every commit
//!   ([`Durability::Buffered`], synced by a background thread every 10 ms).
//!   Yardstick: SQLite (bundled, WAL, `synchronous=NORMAL`, which likewise
//!   does not sync each commit), one `BEGIN IMMEDIATE` transaction per
//!   transfer (two `SELECT`s, two `UPDATE`s) on one connection shared by the
//!   threads behind a mutex (SQLite admits one writer at a time).
//! * `snapshot_reads/w<W>`: consistent reads/s of 16 pages (256 accounts,
//!   summed) by one reader thread through [`Store::snapshot_of`] while `W`
//!   writer threads run low-contention transfers in memory. Yardstick: the
//!   same read (lock, sum 256 accounts, unlock) on the `Mutex<HashMap>` while
//!   `W` writers run there. The writers' transactions/s are printed alongside.
//!
//! No case has a target in the issue; `target` is null and the ratio is
//! reported for the record (docs/benchmarks.md).

use clap::Args;
use mmsb_core::{Delta, Durability, Op, PageId, PageLocation, Store, StoreOptions};
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Arguments of `mmsb bench txn`.
#[derive(Args)]
pub struct BenchTxnArgs {
    /// Directory under which temporary data directories are made.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Alternating repetitions per case (the best of each side is reported).
    #[arg(long, default_value_t = 2)]
    pub reps: usize,
    /// Directory for txn.json (default: benchmark/results of the repository).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A CI-sized smoke run (numbers not meaningful).
    #[arg(long)]
    pub quick: bool,
    /// Run only the cases whose name contains this (e.g. `mem/high`, `snapshot`).
    #[arg(long)]
    pub only: Option<String>,
}

const PER_PAGE: u64 = 16;
const INITIAL: i64 = 1_000;
const READ_PAGES: u64 = 16;

fn es(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A per-thread xorshift generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
    /// (from, to, amount) of a random transfer among `accounts`.
    fn transfer(&mut self, accounts: u64) -> (u64, u64, i64) {
        (
            self.below(accounts),
            self.below(accounts),
            1 + self.below(300) as i64,
        )
    }
}

/// A fresh, empty directory under `base` (the disk measured), removed on drop.
fn temp_dir(base: &Path, tag: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(&format!("mmsb-bench-txn-{tag}-"))
        .tempdir_in(base)
        .map_err(|e| format!("creating a temporary directory in {}: {e}", base.display()))
}

/// Runs `work(thread, &stop)` on `threads` threads for `secs`; each returns its
/// count; returns (sum of counts)/s.
fn timed(
    threads: usize,
    secs: f64,
    work: impl Fn(usize, &AtomicBool) -> Result<u64, String> + Sync,
) -> Result<f64, String> {
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let results: Vec<Result<u64, String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (work, stop) = (&work, &stop);
                s.spawn(move || work(t, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect()
    });
    let el = t0.elapsed().as_secs_f64();
    let mut n = 0;
    for r in results {
        n += r?;
    }
    Ok(n as f64 / el)
}

/// An MMSB store holding `accounts` accounts (ids 1..=pages).
fn mmsb_bank(dir: Option<&Path>, accounts: u64) -> Result<Store, String> {
    let store = match dir {
        None => Store::in_memory(),
        Some(d) => Store::open(
            d,
            StoreOptions {
                durability: Durability::Buffered {
                    max_delay: Duration::from_millis(10),
                },
                ..StoreOptions::default()
            },
        )
        .map_err(es)?,
    };
    let pages = accounts.div_ceil(PER_PAGE);
    let mut ops: Vec<Op> = (0..pages)
        .map(|_| Op::CreatePage {
            size: PER_PAGE * 8,
            location: PageLocation::Cpu,
        })
        .collect();
    let page: Vec<u8> = (0..PER_PAGE).flat_map(|_| INITIAL.to_le_bytes()).collect();
    ops.extend((1..=pages).map(|p| Op::Delta(Delta::dense(PageId(p), 0, page.clone()))));
    store.commit(ops).map_err(es)?;
    Ok(store)
}

fn locate(account: u64) -> (PageId, u64) {
    (PageId(account / PER_PAGE + 1), (account % PER_PAGE) * 8)
}

fn i64_at(b: &[u8], off: u64) -> i64 {
    let o = off as usize;
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    i64::from_le_bytes(a)
}

/// One MMSB transfer transaction (retried on conflict).
fn mmsb_transfer(store: &Store, from: u64, to: u64, amount: i64) -> Result<(), String> {
    store
        .with_transaction(|txn| {
            let ((fp, fo), (tp, tof)) = (locate(from), locate(to));
            let fb = i64_at(&txn.read(fp)?, fo);
            let tb = i64_at(&txn.read(tp)?, tof);
            if from != to && fb >= amount {
                txn.write(Delta::dense(fp, fo, (fb - amount).to_le_bytes().to_vec()))?;
                txn.write(Delta::dense(tp, tof, (tb + amount).to_le_bytes().to_vec()))?;
            }
            Ok(())
        })
        .map(|_| ())
        .map_err(es)
}

fn mmsb_total(store: &Store, accounts: u64) -> Result<i64, String> {
    let ids: Vec<PageId> = (1..=accounts.div_ceil(PER_PAGE)).map(PageId).collect();
    let snap = store.snapshot_of(&ids).map_err(es)?;
    let mut sum = 0;
    for p in ids {
        let b = snap.bytes(p).map_err(es)?;
        sum += (0..PER_PAGE).map(|i| i64_at(b, i * 8)).sum::<i64>();
    }
    Ok(sum)
}

fn check_total(what: &str, total: i64, accounts: u64) -> Result<(), String> {
    if total != accounts as i64 * INITIAL {
        return Err(format!(
            "{what}: the total is {total}, expected {}",
            accounts as i64 * INITIAL
        ));
    }
    Ok(())
}

/// MMSB transactions/s.
fn mmsb_txns(
    base: Option<&Path>,
    accounts: u64,
    threads: usize,
    secs: f64,
) -> Result<(f64, u64), String> {
    let td = base.map(|b| temp_dir(b, "mmsb")).transpose()?;
    let store = mmsb_bank(td.as_ref().map(|t| t.path()), accounts)?;
    let rate = timed(threads, secs, |t, stop| {
        let mut rng = Rng::new(t as u64 + 1);
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let (f, to, a) = rng.transfer(accounts);
            mmsb_transfer(&store, f, to, a)?;
            n += 1;
        }
        Ok(n)
    })?;
    check_total("mmsb", mmsb_total(&store, accounts)?, accounts)?;
    let conflicts = store.transaction_stats().conflicts;
    store.close().map_err(es)?;
    Ok((rate, conflicts))
}

fn map_bank(accounts: u64) -> Mutex<HashMap<u64, i64>> {
    Mutex::new((0..accounts).map(|a| (a, INITIAL)).collect())
}

fn map_transfer(m: &Mutex<HashMap<u64, i64>>, from: u64, to: u64, amount: i64) {
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    let fb = g.get(&from).copied().unwrap_or(0);
    if from != to && fb >= amount {
        *g.entry(from).or_insert(0) -= amount;
        *g.entry(to).or_insert(0) += amount;
    }
}

/// Global-mutex transactions/s.
fn map_txns(accounts: u64, threads: usize, secs: f64) -> Result<f64, String> {
    let m = map_bank(accounts);
    let rate = timed(threads, secs, |t, stop| {
        let mut rng = Rng::new(t as u64 + 1);
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let (f, to, a) = rng.transfer(accounts);
            map_transfer(&m, f, to, a);
            n += 1;
        }
        Ok(n)
    })?;
    let total = m.lock().map_err(es)?.values().sum();
    check_total("mutex map", total, accounts)?;
    Ok(rate)
}

fn sqlite_bank(path: &Path, accounts: u64) -> Result<Connection, String> {
    let mut c = Connection::open(path).map_err(es)?;
    let mode: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(es)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused WAL mode (got {mode})"));
    }
    c.execute_batch(
        "PRAGMA synchronous=NORMAL;
         CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);",
    )
    .map_err(es)?;
    let tx = c.transaction().map_err(es)?;
    {
        let mut ins = tx
            .prepare("INSERT INTO accounts(id, balance) VALUES (?1, ?2)")
            .map_err(es)?;
        for a in 0..accounts {
            ins.execute(params![a as i64, INITIAL]).map_err(es)?;
        }
    }
    tx.commit().map_err(es)?;
    Ok(c)
}

fn sqlite_transfer(c: &mut Connection, from: u64, to: u64, amount: i64) -> Result<(), String> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(es)?;
    let bal = |id: u64| -> Result<i64, String> {
        tx.prepare_cached("SELECT balance FROM accounts WHERE id = ?1")
            .map_err(es)?
            .query_row(params![id as i64], |r| r.get(0))
            .map_err(es)
    };
    let (fb, tb) = (bal(from)?, bal(to)?);
    if from != to && fb >= amount {
        let mut up = tx
            .prepare_cached("UPDATE accounts SET balance = ?2 WHERE id = ?1")
            .map_err(es)?;
        up.execute(params![from as i64, fb - amount]).map_err(es)?;
        up.execute(params![to as i64, tb + amount]).map_err(es)?;
    }
    tx.commit().map_err(es)
}

/// SQLite transactions/s.
fn sqlite_txns(base: &Path, accounts: u64, threads: usize, secs: f64) -> Result<f64, String> {
    let td = temp_dir(base, "sqlite")?;
    let conn = Mutex::new(sqlite_bank(&td.path().join("bank.db"), accounts)?);
    let rate = timed(threads, secs, |t, stop| {
        let mut rng = Rng::new(t as u64 + 1);
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let (f, to, a) = rng.transfer(accounts);
            let mut c = conn.lock().map_err(es)?;
            sqlite_transfer(&mut c, f, to, a)?;
            n += 1;
        }
        Ok(n)
    })?;
    let c = conn.lock().map_err(es)?;
    let total: i64 = c
        .query_row("SELECT SUM(balance) FROM accounts", [], |r| r.get(0))
        .map_err(es)?;
    check_total("sqlite", total, accounts)?;
    Ok(rate)
}

/// (reader reads/s, writer transactions/s) for MMSB snapshots with `writers` writers.
fn mmsb_snapshot_reads(writers: usize, secs: f64) -> Result<(f64, f64), String> {
    let accounts = 65_536;
    let store = mmsb_bank(None, accounts)?;
    let pages = accounts / PER_PAGE;
    let writes = AtomicU64::new(0);
    let reads = timed(writers + 1, secs, |t, stop| {
        let mut rng = Rng::new(t as u64 + 1);
        let mut n = 0;
        if t == 0 {
            let mut ids = Vec::with_capacity(READ_PAGES as usize);
            while !stop.load(Ordering::Relaxed) {
                ids.clear();
                let first = rng.below(pages - READ_PAGES);
                ids.extend((first + 1..=first + READ_PAGES).map(PageId));
                let snap = store.snapshot_of(&ids).map_err(es)?;
                let mut sum = 0i64;
                for &p in &ids {
                    let b = snap.bytes(p).map_err(es)?;
                    sum += (0..PER_PAGE).map(|i| i64_at(b, i * 8)).sum::<i64>();
                }
                std::hint::black_box(sum);
                n += 1;
            }
        } else {
            while !stop.load(Ordering::Relaxed) {
                let (f, to, a) = rng.transfer(accounts);
                mmsb_transfer(&store, f, to, a)?;
                writes.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(n)
    })?;
    check_total("mmsb", mmsb_total(&store, accounts)?, accounts)?;
    Ok((reads, writes.into_inner() as f64 / secs))
}

/// The same with a global `Mutex<HashMap>`.
fn map_snapshot_reads(writers: usize, secs: f64) -> Result<(f64, f64), String> {
    let accounts = 65_536;
    let m = map_bank(accounts);
    let writes = AtomicU64::new(0);
    let reads = timed(writers + 1, secs, |t, stop| {
        let mut rng = Rng::new(t as u64 + 1);
        let mut n = 0;
        if t == 0 {
            let span = READ_PAGES * PER_PAGE;
            while !stop.load(Ordering::Relaxed) {
                let first = rng.below(accounts - span);
                let g = m.lock().map_err(es)?;
                let sum: i64 = (first..first + span)
                    .map(|a| g.get(&a).copied().unwrap_or(0))
                    .sum();
                drop(g);
                std::hint::black_box(sum);
                n += 1;
            }
        } else {
            while !stop.load(Ordering::Relaxed) {
                let (f, to, a) = rng.transfer(accounts);
                map_transfer(&m, f, to, a);
                writes.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(n)
    })?;
    Ok((reads, writes.into_inner() as f64 / secs))
}

fn most(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

struct Report {
    results: Vec<Value>,
}

impl Report {
    fn add(&mut self, name: &str, value: f64, unit: &str, yardstick: &str, yv: f64, extra: &str) {
        let ratio = value / yv;
        println!(
            "txn/{name:<22} {value:12.1} {unit:<8} {yardstick}: {yv:12.1}  {extra}ratio={ratio:.3}"
        );
        self.results.push(json!({
            "name": name,
            "value": round3(value),
            "unit": unit,
            "yardstick": yardstick,
            "yardstick_value": round3(yv),
            "ratio": round3(ratio),
            "target": Value::Null,
            "note": extra.trim(),
        }));
    }
}

/// Runs the benchmark.
pub fn run(args: BenchTxnArgs) -> Result<(), String> {
    let (secs, reps) = if args.quick {
        (0.1, 1)
    } else {
        (args.seconds, args.reps)
    };
    if secs <= 0.0 || reps == 0 {
        return Err("--seconds and --reps must be positive".into());
    }
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
    println!(
        "mmsb bench txn: dir {}, {secs} s per measurement, best of {reps} alternating reps; cpu {}",
        base.display(),
        crate::machine::cpu_name()
    );
    let only = args.only.clone().unwrap_or_default();
    let want = |name: &str| name.contains(only.as_str());
    let mut rep = Report {
        results: Vec::new(),
    };
    for (level, accounts) in [("low", 65_536u64), ("high", 16)] {
        for t in [1usize, 2, 4, 8] {
            let name = format!("mem/{level}/t{t}");
            if want(&name) {
                let (mut m, mut y, mut conflicts) = (Vec::new(), Vec::new(), 0);
                for _ in 0..reps {
                    let (r, c) = mmsb_txns(None, accounts, t, secs)?;
                    m.push(r);
                    conflicts += c;
                    y.push(map_txns(accounts, t, secs)?);
                }
                rep.add(
                    &name,
                    most(&m),
                    "txn/s",
                    "global Mutex<HashMap> txn/s",
                    most(&y),
                    &format!("({conflicts} conflicts) "),
                );
            }
            let name = format!("log/{level}/t{t}");
            if want(&name) {
                let (mut m, mut y, mut conflicts) = (Vec::new(), Vec::new(), 0);
                for _ in 0..reps {
                    let (r, c) = mmsb_txns(Some(&base), accounts, t, secs)?;
                    m.push(r);
                    conflicts += c;
                    y.push(sqlite_txns(&base, accounts, t, secs)?);
                }
                rep.add(
                    &name,
                    most(&m),
                    "txn/s",
                    "SQLite WAL synchronous=NORMAL BEGIN IMMEDIATE txn/s",
                    most(&y),
                    &format!("({conflicts} conflicts) "),
                );
            }
        }
    }
    for w in [1usize, 4] {
        let name = format!("snapshot_reads/w{w}");
        if !want(&name) {
            continue;
        }
        let (mut m, mut y, mut mw, mut yw) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            let (r, wr) = mmsb_snapshot_reads(w, secs)?;
            m.push(r);
            mw.push(wr);
            let (r, wr) = map_snapshot_reads(w, secs)?;
            y.push(r);
            yw.push(wr);
        }
        rep.add(
            &name,
            most(&m),
            "reads/s",
            "global Mutex<HashMap> reads/s",
            most(&y),
            &format!(
                "(16 pages per read; writers {:.0} txn/s vs {:.0}) ",
                most(&mw),
                most(&yw)
            ),
        );
    }
    let doc = json!({
        "group": "txn",
        "date": crate::machine::today(),
        "machine": crate::machine::machine_json(),
        "quick": args.quick,
        "results": rep.results,
    });
    let dir = args.out.unwrap_or_else(crate::default_results_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join("txn.json");
    let text = serde_json::to_string_pretty(&doc).map_err(es)?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

//! `mmsb demo`: the main job.
//!
//! Opens (and so recovers) a durable store under a data directory (default:
//! `$MMSB_HOME`, else `$XDG_DATA_HOME/mmsb/demo`, else `~/.local/share/mmsb/demo`),
//! replaces the previous run's pages, commits a stream of random dense, masked
//! and sparse deltas in batches (immediate durability: each commit is fsync'd),
//! checks every page against an independent reference model (plain byte
//! vectors updated one byte at a time), rebuilds a past state by replay, then
//! runs a derived-page pipeline on the same store (see [`crate::demo_pipeline`]:
//! immediate waves and a deferred batch, each checked against a from-scratch
//! recomputation), writes a checkpoint, closes, reopens, and shows that pages,
//! dependency graph and derived pages round-trip without running any
//! recompute function; then re-attaches the functions and runs one more wave.

use crate::demo_pipeline::Pipeline;
use clap::Args;
use mmsb_core::{
    mask, Delta, Durability, Kernel, Op, PageId, PageLocation, Store, StoreOptions, Target,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `mmsb demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Data directory of the embedded store.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Number of pages.
    #[arg(long, default_value_t = 64)]
    pub pages: u64,
    /// Page size in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub page_size: u64,
    /// Number of deltas to apply.
    #[arg(long, default_value_t = 200_000)]
    pub deltas: u64,
    /// Deltas per commit (each commit is one fsync'd log group).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Random seed (the run is deterministic for a seed).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The default data directory.
pub fn default_data_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("MMSB_HOME") {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("mmsb").join("demo");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/mmsb/demo"),
        None => PathBuf::from(".mmsb/demo"),
    }
}

fn random_delta(rng: &mut StdRng, page: PageId, page_size: u64) -> Delta {
    let len = rng.gen_range(1..=page_size.min(4096));
    let offset = rng.gen_range(0..=page_size - len);
    let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    match rng.gen_range(0..3) {
        0 => Delta::dense(page, offset, bytes),
        1 => {
            let flags: Vec<bool> = (0..len).map(|_| rng.gen_bool(0.5)).collect();
            Delta::masked(page, offset, bytes, mask::from_flags(&flags))
        }
        _ => {
            let flags: Vec<bool> = (0..len).map(|_| rng.gen_bool(0.05)).collect();
            let m = mask::from_flags(&flags);
            let n = mask::count_ones(&m) as usize;
            Delta::sparse(page, offset, len, m, bytes[..n].to_vec())
        }
    }
    .with_source("demo")
}

fn apply_to_model(model: &mut [u8], d: &Delta) -> Result<(), String> {
    let r = d.offset as usize..(d.offset + d.len) as usize;
    // The reference kernel is the byte-at-a-time oracle, independent of the SIMD paths.
    mmsb_core::apply::apply_reference(&mut model[r], d)
        .map_err(|e| format!("demo generated an invalid delta: {e}"))
}

fn model_of(store: &Store, ids: &[PageId]) -> Result<Vec<Vec<u8>>, String> {
    ids.iter()
        .map(|id| store.read(*id).map_err(|e| e.to_string()))
        .collect()
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<(), String> {
    if args.pages == 0 || args.page_size == 0 || args.batch == 0 {
        return Err("--pages, --page-size and --batch must be at least 1".into());
    }
    let dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    println!("mmsb demo: durable store in {}", dir.display());
    println!(
        "  apply kernel: {} (available: {})",
        Kernel::best().name(),
        Kernel::ALL
            .iter()
            .filter(|k| k.is_available())
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let opts = StoreOptions {
        durability: Durability::Immediate,
        compression: true,
        ..StoreOptions::default()
    };
    let t = Instant::now();
    let store = Store::open(&dir, opts).map_err(|e| format!("open {}: {e}", dir.display()))?;
    let old: Vec<PageId> = store.read_with(|s| s.page_ids());
    let rep = store.recovery_report();
    println!(
        "  opened in {:.1} ms: recovered LSN {} ({} pages; {} commits replayed from the log{})",
        t.elapsed().as_secs_f64() * 1e3,
        rep.lsn,
        old.len(),
        rep.commits_replayed,
        rep.checkpoint.as_ref().map_or(String::new(), |c| format!(
            ", after checkpoint at LSN {}",
            c.lsn
        ))
    );
    if !old.is_empty() {
        // Start from a clean slate, in one logged commit.
        store
            .commit(old.iter().map(|&id| Op::DeletePage(id)).collect())
            .map_err(|e| e.to_string())?;
        println!("  deleted the {} pages of the previous run", old.len());
    }
    let create = (0..args.pages)
        .map(|_| Op::CreatePage {
            size: args.page_size,
            location: PageLocation::Cpu,
        })
        .collect();
    let ids = store.commit(create).map_err(|e| e.to_string())?.created;
    let mut model: Vec<Vec<u8>> = vec![vec![0u8; args.page_size as usize]; ids.len()];
    println!(
        "  created {} pages of {} bytes ({:.1} MiB)",
        args.pages,
        args.page_size,
        (args.pages * args.page_size) as f64 / (1 << 20) as f64
    );
    let mut rng = StdRng::seed_from_u64(args.seed);
    // Generate first so that throughput measures the store, not the generator.
    let deltas: Vec<(usize, Delta)> = (0..args.deltas)
        .map(|_| {
            let i = rng.gen_range(0..ids.len());
            (i, random_delta(&mut rng, ids[i], args.page_size))
        })
        .collect();
    let payload: u64 = deltas.iter().map(|(_, d)| d.written_bytes()).sum();
    let batches: Vec<&[(usize, Delta)]> = deltas.chunks(args.batch).collect();
    let half = batches.len() / 2;
    let mut half_lsn = 0;
    let mut half_model = Vec::new();
    let t = Instant::now();
    let step = (batches.len() / 4).max(1);
    for (n, batch) in batches.iter().enumerate() {
        let ops = batch.iter().map(|(_, d)| Op::Delta(d.clone())).collect();
        let receipt = store.commit(ops).map_err(|e| e.to_string())?;
        for (i, d) in batch.iter() {
            apply_to_model(&mut model[*i], d)?;
        }
        if n + 1 == half {
            half_lsn = receipt.lsn;
            half_model = model.clone();
        }
        if (n + 1) % step == 0 {
            println!(
                "  ... {} / {} commits (LSN {})",
                n + 1,
                batches.len(),
                receipt.lsn
            );
        }
    }
    let secs = t.elapsed().as_secs_f64().max(1e-9);
    let st = store.stats();
    println!(
        "  committed {} deltas in {} commits of up to {} (fsync each, {} fsyncs): {:.0} deltas/s, {:.0} commits/s, {:.1} MiB payload, {:.1} MiB of log",
        deltas.len(),
        batches.len(),
        args.batch,
        st.log_syncs,
        deltas.len() as f64 / secs,
        batches.len() as f64 / secs,
        payload as f64 / (1 << 20) as f64,
        st.log_bytes as f64 / (1 << 20) as f64
    );
    if model_of(&store, &ids)? != model {
        return Err("live pages differ from the reference model".into());
    }
    println!(
        "  verified: all {} pages equal the reference model",
        ids.len()
    );
    if half_lsn > 0 {
        let past = store
            .state_at(Target::Lsn(half_lsn))
            .map_err(|e| e.to_string())?;
        for (id, want) in ids.iter().zip(&half_model) {
            if &past.read(*id).map_err(|e| e.to_string())? != want {
                return Err(format!(
                    "replay to LSN {half_lsn}: {id} differs from the model"
                ));
            }
        }
        println!("  time travel: state at LSN {half_lsn} rebuilt read-only and equals the model at that commit");
    }
    let mut pipeline = Pipeline::build(&store, args.seed)?;
    pipeline.run_waves(&store)?;
    pipeline.summary();
    let ck = store.checkpoint().map_err(|e| e.to_string())?;
    println!(
        "  checkpoint at LSN {}: {} pages, {:.1} MiB, {}",
        ck.lsn,
        ck.pages,
        ck.file_bytes as f64 / (1 << 20) as f64,
        ck.path.display()
    );
    let lsn = store.lsn();
    let snapshot = pipeline.snapshot(&store)?;
    store.close().map_err(|e| e.to_string())?;
    let t = Instant::now();
    let store = Store::open(&dir, opts).map_err(|e| format!("reopen: {e}"))?;
    let rep = store.recovery_report();
    println!(
        "  reopened in {:.1} ms: LSN {} (was {lsn}), {} commits replayed after the checkpoint",
        t.elapsed().as_secs_f64() * 1e3,
        rep.lsn,
        rep.commits_replayed
    );
    if rep.lsn != lsn || model_of(&store, &ids)? != model {
        return Err("the reopened store differs from the state before close".into());
    }
    println!("  round trip: every page equals the state before close");
    pipeline.check_reopened(&store, &snapshot)?;
    store.close().map_err(|e| e.to_string())?;
    Ok(())
}

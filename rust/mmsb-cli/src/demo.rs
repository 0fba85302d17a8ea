//! `mmsb demo`: the main job.
//!
//! Creates an embedded store under a data directory (default: `$MMSB_HOME`, else
//! `$XDG_DATA_HOME/mmsb/demo`, else `~/.local/share/mmsb/demo`), creates pages,
//! applies a stream of random dense, masked and sparse deltas, checks every
//! page against an independent reference model (plain byte vectors updated
//! one byte at a time), and prints pages, deltas, bytes and throughput.

use clap::Args;
use mmsb_core::{mask, Delta, Kernel, PageId, PageLocation, PageStore};
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

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<(), String> {
    if args.pages == 0 || args.page_size == 0 {
        return Err("--pages and --page-size must be at least 1".into());
    }
    let dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    println!("mmsb demo: data directory {}", dir.display());
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
    let mut store = PageStore::new();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut ids = Vec::new();
    let mut model = Vec::new();
    for _ in 0..args.pages {
        ids.push(
            store
                .create_page(args.page_size, PageLocation::Cpu)
                .map_err(|e| e.to_string())?,
        );
        model.push(vec![0u8; args.page_size as usize]);
    }
    println!(
        "  created {} pages of {} bytes ({:.1} MiB)",
        args.pages,
        args.page_size,
        (args.pages * args.page_size) as f64 / (1 << 20) as f64
    );
    // Generate first so that throughput measures the store, not the generator.
    let deltas: Vec<(usize, Delta)> = (0..args.deltas)
        .map(|_| {
            let i = rng.gen_range(0..ids.len());
            (i, random_delta(&mut rng, ids[i], args.page_size))
        })
        .collect();
    let payload: u64 = deltas.iter().map(|(_, d)| d.written_bytes()).sum();
    let t = Instant::now();
    let step = (deltas.len() / 4).max(1);
    for (n, (_, d)) in deltas.iter().enumerate() {
        store.apply_delta(d).map_err(|e| e.to_string())?;
        if (n + 1) % step == 0 {
            println!("  ... {} / {} deltas", n + 1, deltas.len());
        }
    }
    let secs = t.elapsed().as_secs_f64().max(1e-9);
    for (i, d) in &deltas {
        apply_to_model(&mut model[*i], d)?;
    }
    for (id, m) in ids.iter().zip(&model) {
        let got = store.read(*id).map_err(|e| e.to_string())?;
        if &got != m {
            return Err(format!("{id} differs from the reference model"));
        }
    }
    let st = store.stats();
    println!(
        "  applied {} deltas ({} changed a page, {} no-ops), {:.1} MiB written",
        deltas.len(),
        st.deltas_applied,
        st.deltas_noop,
        payload as f64 / (1 << 20) as f64
    );
    println!(
        "  throughput: {:.0} deltas/s, {:.2} GB/s of payload",
        deltas.len() as f64 / secs,
        payload as f64 / secs / 1e9
    );
    println!(
        "  verified: all {} pages equal the reference model",
        ids.len()
    );
    Ok(())
}

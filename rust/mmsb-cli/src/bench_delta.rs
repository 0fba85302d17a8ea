//! `mmsb bench delta`: apply kernels against memcpy of the same bytes.
//!
//! One region (default 64 MiB, far larger than the last-level cache, so the page
//! lives in DRAM) is the destination; a separate buffer of the same size is the
//! dense payload. The yardstick is `memcpy` of the whole region between those
//! two buffers, measured in the same run: each case alternates one memcpy and
//! one apply per repetition and reports the best of each (the machine is
//! shared, and interference only ever makes a run slower), so `ratio` is
//! `value / yardstick_value`. The printed line adds the median apply rate and
//! the median of the per-repetition ratios of adjacent runs, for judging noise.
//!
//! Cases, for every kernel this CPU runs:
//!
//! * `dense_random_mask`: dense payload, every mask bit random (50% of bytes);
//!   target 0.6x memcpy of the same bytes.
//! * `full_mask`: dense payload, every mask bit set; target 0.9x memcpy.
//! * `sparse1_dense_payload` / `sparse1_sparse_payload`: 1% of the mask words
//!   non-zero (each a random word), dense or packed payload; the ratio is
//!   memcpy of the whole region over the apply, target 5x.
//!
//! Plus `nomask`: a delta without a mask through [`mmsb_core::apply::apply_with`]
//! (a plain copy on every kernel); target 0.9x.

use clap::Args;
use mmsb_core::apply::{self, Kernel};
use mmsb_core::page_buf::PageBuf;
use mmsb_core::{Delta, PageId};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `mmsb bench delta`.
#[derive(Args)]
pub struct BenchDeltaArgs {
    /// Region size in MiB.
    #[arg(long, default_value_t = 64)]
    pub region_mib: usize,
    /// Repetitions per case (the best is reported).
    #[arg(long, default_value_t = 15)]
    pub reps: usize,
    /// Directory for delta.json (default: benchmark/results of the repository).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A quick smoke run: 8 MiB region, 3 repetitions (numbers not meaningful).
    #[arg(long)]
    pub quick: bool,
}

struct Bufs {
    dst: PageBuf,
    src: Vec<u8>,
}

impl Bufs {
    fn memcpy(&mut self) {
        self.dst.as_mut_slice().copy_from_slice(&self.src);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Seconds for `f`.
fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

struct Sample {
    /// Best (shortest) apply time.
    apply_s: f64,
    /// Best memcpy time.
    memcpy_s: f64,
    /// Median apply time.
    median_apply_s: f64,
    /// Median over repetitions of memcpy time / apply time of adjacent runs.
    median_ratio: f64,
}

/// Alternates memcpy and `apply` `reps` times (after one warm-up of each).
fn measure(
    bufs: &mut Bufs,
    reps: usize,
    mut apply: impl FnMut(&mut Bufs) -> Result<(), String>,
) -> Result<Sample, String> {
    bufs.memcpy();
    apply(bufs)?;
    let mut a = Vec::with_capacity(reps);
    let mut m = Vec::with_capacity(reps);
    for _ in 0..reps {
        m.push(time(|| bufs.memcpy()));
        let mut r = Ok(());
        a.push(time(|| r = apply(bufs)));
        r?;
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let mut pair: Vec<f64> = m.iter().zip(&a).map(|(m, a)| m / a).collect();
    Ok(Sample {
        apply_s: best(&a),
        memcpy_s: best(&m),
        median_apply_s: median(&mut a),
        median_ratio: median(&mut pair),
    })
}

fn random_mask(rng: &mut StdRng, words: usize) -> Vec<u64> {
    (0..words).map(|_| rng.gen()).collect()
}

fn sparse_mask(rng: &mut StdRng, words: usize, percent: f64) -> Vec<u64> {
    (0..words)
        .map(|_| {
            if rng.gen_bool(percent / 100.0) {
                rng.gen::<u64>() | 1
            } else {
                0
            }
        })
        .collect()
}

/// Runs the benchmark.
pub fn run(args: BenchDeltaArgs) -> Result<(), String> {
    let (mib, reps) = if args.quick {
        (8, 3)
    } else {
        (args.region_mib, args.reps)
    };
    if mib == 0 || reps == 0 {
        return Err("--region-mib and --reps must be at least 1".into());
    }
    let len = mib << 20;
    let words = len / 64;
    let gb = len as f64 / 1e9;
    let mut rng = StdRng::seed_from_u64(0x4d4d_5342);
    let mut src = vec![0u8; len];
    rng.fill_bytes(&mut src);
    let dst = PageBuf::zeroed(len).map_err(|e| e.to_string())?;
    let mut bufs = Bufs { dst, src };
    // Fault every page of the destination in before anything is timed.
    bufs.memcpy();

    let rand_mask = random_mask(&mut rng, words);
    let full_mask = vec![u64::MAX; words];
    let sp_mask = sparse_mask(&mut rng, words, 1.0);
    let sp_values: Vec<u8> = {
        let n = mmsb_core::mask::count_ones(&sp_mask) as usize;
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    };
    let nomask = Delta::dense(PageId(1), 0, bufs.src.clone());

    println!(
        "mmsb bench delta: region {mib} MiB, best of {reps} reps; yardstick memcpy of {mib} MiB; cpu {}",
        crate::machine::cpu_name()
    );
    let mut results: Vec<Value> = Vec::new();
    let mut report = |name: String, s: &Sample, target: f64| {
        let value = gb / s.apply_s;
        let yard = gb / s.memcpy_s;
        let ratio = s.memcpy_s / s.apply_s;
        println!(
            "delta/{name:<30} {value:7.2} GB/s (median {:6.2})  memcpy {yard:6.2} GB/s  \
             median pair ratio {:6.3}  ratio={ratio:.3} target={target}",
            gb / s.median_apply_s,
            s.median_ratio
        );
        results.push(json!({
            "name": name,
            "value": round3(value),
            "unit": "GB/s",
            "yardstick": format!("memcpy of the {mib} MiB region"),
            "yardstick_value": round3(yard),
            "ratio": round3(ratio),
            "target": target,
        }));
    };

    for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        let e = |e: mmsb_core::Error| e.to_string();
        let s = measure(&mut bufs, reps, |b| {
            apply::apply_masked(k, b.dst.as_mut_slice(), &b.src, &rand_mask).map_err(e)
        })?;
        report(format!("{}/dense_random_mask", k.name()), &s, 0.6);
        let s = measure(&mut bufs, reps, |b| {
            apply::apply_masked(k, b.dst.as_mut_slice(), &b.src, &full_mask).map_err(e)
        })?;
        report(format!("{}/full_mask", k.name()), &s, 0.9);
        let s = measure(&mut bufs, reps, |b| {
            apply::apply_masked(k, b.dst.as_mut_slice(), &b.src, &sp_mask).map_err(e)
        })?;
        report(format!("{}/sparse1_dense_payload", k.name()), &s, 5.0);
        let s = measure(&mut bufs, reps, |b| {
            apply::apply_sparse(k, b.dst.as_mut_slice(), &sp_values, &sp_mask).map_err(e)
        })?;
        report(format!("{}/sparse1_sparse_payload", k.name()), &s, 5.0);
    }
    let best = Kernel::best();
    let s = measure(&mut bufs, reps, |b| {
        apply::apply_with(best, b.dst.as_mut_slice(), &nomask).map_err(|e| e.to_string())
    })?;
    report("nomask".to_owned(), &s, 0.9);

    let doc = json!({
        "group": "delta",
        "date": crate::machine::today(),
        "machine": crate::machine::machine_json(),
        "results": results,
    });
    let dir = args.out.unwrap_or_else(crate::default_results_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join("delta.json");
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

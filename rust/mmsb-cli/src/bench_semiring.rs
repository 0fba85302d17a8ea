//! `mmsb bench semiring`: semiring folds and accumulation against memcpy.
//!
//! Two vectors `x` and `c` of one region each (default 64 MiB, far larger than
//! the last-level cache, so they live in DRAM). The yardstick is `memcpy` of
//! one region (`x` into a third buffer), measured in the same run: each case
//! alternates one memcpy and one kernel call per repetition and reports the
//! best of each (the machine is shared, and interference only ever makes a
//! run slower), so `ratio = memcpy time / kernel time` for the same number of
//! bytes (one region). `value` is region bytes / kernel time in GB/s.
//!
//! A fold reads one region (memcpy reads one and writes one), so a fold that
//! keeps up with memory beats memcpy: target 1.0x. `accumulate` (`c ⊕= x`)
//! reads two regions and writes one: target 0.6x. `accumulate_masked` (a
//! random mask, half the elements) likewise: target 0.5x.
//!
//! Cases: every kernel this CPU runs (`scalar` = the portable lanes compiled
//! for the baseline target, `avx2`, `avx512`), plus the sequential
//! `reference` loop, for a selection of (semiring, dtype) pairs. A second,
//! cache-resident size (`--cache-kib`, default 256 KiB, each repetition runs
//! the kernel enough times to cover one region) shows the kernels where
//! memory does not hide the arithmetic; its yardstick is memcpy of the same
//! cache-resident bytes, repeated the same number of times.
//!
//! Semiring matrix-vector propagation (mxv against SuiteSparse:GraphBLAS) is
//! measured by [`crate::bench_semiring_mxv`] (issue 5, part 4): its cases go
//! under the `"mxv"` key of `semiring.json` (see [`MXV_KEY`]).

use clap::Args;
use mmsb_core::apply::Kernel;
use mmsb_core::semiring::{MaxTimes, MinPlus, OrAnd, PlusTimes, Semiring};
use mmsb_core::semiring_kernels as sk;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

/// Key of `semiring.json` reserved for the mxv-vs-GraphBLAS cases.
pub const MXV_KEY: &str = "mxv";

/// Arguments of `mmsb bench semiring`.
#[derive(Args)]
pub struct BenchSemiringArgs {
    /// Region size in MiB (per vector).
    #[arg(long, default_value_t = 64)]
    pub region_mib: usize,
    /// Cache-resident vector size in KiB.
    #[arg(long, default_value_t = 256)]
    pub cache_kib: usize,
    /// Repetitions per case (the best is reported).
    #[arg(long, default_value_t = 11)]
    pub reps: usize,
    /// Directory for semiring.json (default: benchmark/results of the repository).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only the cases whose name contains this text (e.g. `min_plus/f64`).
    #[arg(long)]
    pub only: Option<String>,
    /// A quick smoke run: 4 MiB region, 64 KiB cache size, 2 repetitions,
    /// fewer pairs (numbers not meaningful).
    #[arg(long)]
    pub quick: bool,
    /// Run only the mxv and incremental cases (`bench_semiring_mxv`), keeping
    /// the other results of an existing semiring.json.
    #[arg(long)]
    pub mxv_only: bool,
}

/// Seconds for `f`.
fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
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

/// How a kernel is run: a fast instance or the sequential reference.
#[derive(Clone, Copy)]
enum Impl {
    Reference,
    Fast(Kernel),
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Reference => "reference",
            Impl::Fast(k) => k.name(),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    FoldAdd,
    FoldMul,
    Accumulate,
    AccumulateMasked,
}

impl Op {
    const ALL: [Op; 4] = [
        Op::FoldAdd,
        Op::FoldMul,
        Op::Accumulate,
        Op::AccumulateMasked,
    ];
    fn name(self) -> &'static str {
        match self {
            Op::FoldAdd => "fold_add",
            Op::FoldMul => "fold_mul",
            Op::Accumulate => "accumulate",
            Op::AccumulateMasked => "accumulate_masked",
        }
    }
    fn target(self) -> f64 {
        match self {
            Op::FoldAdd | Op::FoldMul => 1.0,
            Op::Accumulate => 0.6,
            Op::AccumulateMasked => 0.5,
        }
    }
}

/// The vectors of one (semiring, size) case.
struct Vectors<E> {
    x: Vec<E>,
    c: Vec<E>,
    mask: Vec<u64>,
    copy_dst: Vec<E>,
}

/// Runs `op` once (`iters` times over the vectors).
fn run_op<S: Semiring>(
    s: &S,
    imp: Impl,
    op: Op,
    v: &mut Vectors<S::Elem>,
    iters: usize,
) -> Result<(), String> {
    let e = |e: mmsb_core::Error| e.to_string();
    for _ in 0..iters {
        match (imp, op) {
            (Impl::Reference, Op::FoldAdd) => {
                black_box(sk::fold_add_reference(s, black_box(&v.x)));
            }
            (Impl::Reference, Op::FoldMul) => {
                black_box(sk::fold_mul_reference(s, black_box(&v.x)));
            }
            (Impl::Reference, Op::Accumulate) => {
                sk::accumulate_reference(s, &mut v.c, &v.x).map_err(e)?
            }
            (Impl::Reference, Op::AccumulateMasked) => {
                sk::accumulate_masked_reference(s, &mut v.c, &v.x, &v.mask).map_err(e)?
            }
            (Impl::Fast(k), Op::FoldAdd) => {
                black_box(sk::fold_add_with(k, s, black_box(&v.x)).map_err(e)?);
            }
            (Impl::Fast(k), Op::FoldMul) => {
                black_box(sk::fold_mul_with(k, s, black_box(&v.x)).map_err(e)?);
            }
            (Impl::Fast(k), Op::Accumulate) => {
                sk::accumulate_with(k, s, &mut v.c, &v.x).map_err(e)?
            }
            (Impl::Fast(k), Op::AccumulateMasked) => {
                sk::accumulate_masked_with(k, s, &mut v.c, &v.x, &v.mask).map_err(e)?
            }
        }
        black_box(&mut v.c);
    }
    Ok(())
}

struct Sample {
    kernel_s: f64,
    memcpy_s: f64,
    median_kernel_s: f64,
}

/// Alternates memcpy and the kernel `reps` times (after one warm-up of each).
fn measure<S: Semiring>(
    s: &S,
    imp: Impl,
    op: Op,
    v: &mut Vectors<S::Elem>,
    iters: usize,
    reps: usize,
) -> Result<Sample, String> {
    let memcpy = |v: &mut Vectors<S::Elem>| {
        for _ in 0..iters {
            v.copy_dst.copy_from_slice(black_box(&v.x));
            black_box(&mut v.copy_dst);
        }
    };
    memcpy(v);
    run_op(s, imp, op, v, iters)?;
    let mut k = Vec::with_capacity(reps);
    let mut m = Vec::with_capacity(reps);
    for _ in 0..reps {
        m.push(time(|| memcpy(v)));
        let mut r = Ok(());
        k.push(time(|| r = run_op(s, imp, op, v, iters)));
        r?;
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(Sample {
        kernel_s: best(&k),
        memcpy_s: best(&m),
        median_kernel_s: median(&mut k),
    })
}

struct Ctx {
    reps: usize,
    region_bytes: usize,
    cache_bytes: usize,
    quick: bool,
    only: Option<String>,
    results: Vec<Value>,
}

impl Ctx {
    /// Runs every op on every implementation for one semiring, at both sizes.
    fn pair<S: Semiring + Default>(
        &mut self,
        label: &str,
        gen: impl Fn(&mut StdRng) -> S::Elem,
    ) -> Result<(), String> {
        let s = S::default();
        let size = std::mem::size_of::<S::Elem>();
        let mut rng = StdRng::seed_from_u64(0x5e41_0001);
        let mut imps = vec![Impl::Reference];
        imps.extend(
            Kernel::ALL
                .into_iter()
                .filter(|k| sk::is_available(*k))
                .map(Impl::Fast),
        );
        for (where_, bytes) in [("dram", self.region_bytes), ("cache", self.cache_bytes)] {
            let n = bytes / size;
            let iters = (self.region_bytes / bytes).max(1);
            let x: Vec<S::Elem> = (0..n).map(|_| gen(&mut rng)).collect();
            let c: Vec<S::Elem> = (0..n).map(|_| gen(&mut rng)).collect();
            let mask = (0..n.div_ceil(64))
                .map(|i| {
                    let w: u64 = rng.gen();
                    if i + 1 == n.div_ceil(64) {
                        w & mmsb_core::mask::last_word_bits(n as u64)
                    } else {
                        w
                    }
                })
                .collect();
            let mut v = Vectors {
                copy_dst: c.clone(),
                x,
                c,
                mask,
            };
            let gb = (n * size * iters) as f64 / 1e9;
            for op in Op::ALL {
                for &imp in &imps {
                    // The reference loop is a yardstick for the fast ones; one
                    // size is enough for it in a quick run.
                    if self.quick && where_ == "cache" && matches!(imp, Impl::Reference) {
                        continue;
                    }
                    let name = format!("{}/{label}/{where_}/{}", op.name(), imp.name());
                    if self.only.as_deref().is_some_and(|o| !name.contains(o)) {
                        continue;
                    }
                    // Accumulating repeatedly must not drift into overflow
                    // traps or infinities that change the speed: reset `c`.
                    v.c.copy_from_slice(&v.copy_dst);
                    let smp = measure(&s, imp, op, &mut v, iters, self.reps)?;
                    let value = gb / smp.kernel_s;
                    let yard = gb / smp.memcpy_s;
                    let ratio = smp.memcpy_s / smp.kernel_s;
                    println!(
                        "semiring/{name:<44} {value:7.2} GB/s (median {:6.2})  memcpy {yard:6.2} GB/s  \
                         ratio={ratio:.3} target={}",
                        gb / smp.median_kernel_s,
                        op.target()
                    );
                    self.results.push(json!({
                        "name": name,
                        "value": round3(value),
                        "unit": "GB/s",
                        "yardstick": format!(
                            "memcpy of the same {} bytes ({} KiB x {iters})",
                            n * size * iters,
                            n * size / 1024
                        ),
                        "yardstick_value": round3(yard),
                        "ratio": round3(ratio),
                        "target": op.target(),
                    }));
                }
            }
        }
        Ok(())
    }
}

/// Runs the benchmark.
pub fn run(args: BenchSemiringArgs) -> Result<(), String> {
    let (mib, kib, reps) = if args.quick {
        (4, 64, 2)
    } else {
        (args.region_mib, args.cache_kib, args.reps)
    };
    if mib == 0 || kib == 0 || reps == 0 {
        return Err("--region-mib, --cache-kib and --reps must be at least 1".into());
    }
    if args.mxv_only {
        let dir = args.out.unwrap_or_else(crate::default_results_dir);
        return crate::bench_semiring_mxv::run_only(args.quick, reps, &dir);
    }
    println!(
        "mmsb bench semiring: region {mib} MiB and {kib} KiB, best of {reps} reps; \
         yardstick memcpy of the same bytes; cpu {}; best kernel {}",
        crate::machine::cpu_name(),
        sk::best().name()
    );
    let mut ctx = Ctx {
        reps,
        region_bytes: mib << 20,
        cache_bytes: kib << 10,
        quick: args.quick,
        only: args.only.clone(),
        results: Vec::new(),
    };
    // Values near 1 keep products finite over millions of elements.
    ctx.pair::<PlusTimes<f64>>("plus_times/f64", |r| r.gen_range(0.999..1.001))?;
    ctx.pair::<MinPlus<f64>>("min_plus/f64", |r| r.gen_range(0.0..1e6))?;
    // All false: fold_add (or) never meets its terminal `true`; fold_mul
    // (and) stops at the first block, which shows the early exit.
    ctx.pair::<OrAnd<u8>>("or_and/bool", |_| 0u8)?;
    if !args.quick {
        ctx.pair::<PlusTimes<f32>>("plus_times/f32", |r| r.gen_range(0.999..1.001))?;
        // Odd values: a wrapping product of even ones reaches 0 and stops early.
        ctx.pair::<PlusTimes<i64>>("plus_times/i64", |r| r.gen_range(-500..500) * 2 + 1)?;
        // Small values of both signs: the sum (fold_mul) never saturates to +inf.
        ctx.pair::<MinPlus<i32>>("min_plus/i32", |r| r.gen_range(-1000..1000))?;
        ctx.pair::<MaxTimes<f32>>("max_times/f32", |r| r.gen_range(0.0..1.0))?;
    }

    let dir = args.out.unwrap_or_else(crate::default_results_dir);
    let mxv = crate::bench_semiring_mxv::run(args.quick, reps, &dir)?;
    let doc = json!({
        "group": "semiring",
        "date": crate::machine::today(),
        "machine": crate::machine::machine_json(),
        "quick": args.quick,
        "results": ctx.results,
        // The semiring-edges work: mxv against GraphBLAS, incremental vs full.
        MXV_KEY: mxv,
    });
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join("semiring.json");
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

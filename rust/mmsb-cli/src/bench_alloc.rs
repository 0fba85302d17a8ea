//! `mmsb bench alloc`: the page allocator against the system malloc and
//! mimalloc, in the same run.
//!
//! **Latency.** A sample times a small batch of allocate+free pairs and
//! divides by the batch size (one pair is ~10 ns, near the clock's own cost, so
//! single pairs cannot be timed honestly); p50 and p99 are over the samples.
//! Two patterns: `pair` (allocate a page, write its first byte, free it; 32
//! times) and `burst32` (allocate 32 pages, writing each, then free all 32).
//! Every allocator hands out 64-byte aligned, zeroed memory: MMSB's
//! [`PageAllocator::alloc_zeroed`] (the process-wide allocator `PageBuf`
//! uses), the system allocator's `alloc_zeroed` (glibc `posix_memalign` plus
//! `memset`), and mimalloc's `GlobalAlloc::alloc_zeroed`
//! (`mi_zalloc_aligned`), mimalloc being called directly, not installed as the
//! global allocator. The three are interleaved in 16 short rounds so machine
//! noise hits them alike, and the samples are split over `--processes` (5)
//! fresh runs of this binary, pooled, so that no one address-space layout
//! decides a ratio (see [`measure_in_processes`]). At 2 threads each thread
//! runs the same loop at the same time. The result `ratio` is yardstick
//! latency / MMSB latency (target >= 1: MMSB no slower).
//!
//! **Resident memory.** One million 1 KiB pages (each filled), through a fresh
//! [`PageAllocator`]: the growth of VmRSS (from `/proc/self/status`) over the
//! raw bytes; target <= 1.1. The storage for the handles is allocated and
//! touched before the first reading, so only the allocator's memory counts.
//! malloc and mimalloc are measured the same way, for information.
//!
//! `--only TEXT` runs only the latency cases whose name contains TEXT (and no
//! resident-memory case), for profiling one case; the loop is unchanged.

use clap::Args;
use mmsb_core::page_alloc::{Block, PageAllocator};
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::Barrier;
use std::time::Instant;

/// Arguments of `mmsb bench alloc`.
#[derive(Args)]
pub struct BenchAllocArgs {
    /// Samples per case and allocator.
    #[arg(long, default_value_t = 20_000)]
    pub samples: usize,
    /// Pages for the resident-memory case.
    #[arg(long, default_value_t = 1_000_000)]
    pub rss_pages: usize,
    /// Directory for alloc.json (default: benchmark/results of the repository).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A quick smoke run (few samples, 64k pages; numbers not meaningful).
    #[arg(long)]
    pub quick: bool,
    /// Only the latency cases whose name (`pattern/sizeB/tN`, e.g.
    /// `burst32/1024B/t2`) contains this text; skips the resident-memory case.
    /// For profiling one case; the result file then holds only those cases.
    #[arg(long)]
    pub only: Option<String>,
    /// A note on the machine for the result file (how loaded it is, what
    /// else runs on it); the load average is recorded anyway.
    #[arg(long)]
    pub note: Option<String>,
    /// Processes the latency samples are split over (each a fresh run of this
    /// binary with its own address-space layout); the percentiles are over
    /// all of them pooled. `--quick` uses 1. 1 measures in this process.
    #[arg(long, default_value_t = 5)]
    pub processes: usize,
    /// Internal: run the latency cases in this process only and write the
    /// raw samples to this file as JSON (what `--processes` starts).
    #[arg(long, hide = true)]
    pub worker_out: Option<PathBuf>,
}

/// The 1-minute load average as text ("unknown" if unreadable).
fn loadavg() -> String {
    crate::machine::load_average().map_or_else(|| "unknown".to_owned(), |l| l.to_string())
}

/// Pairs per sample.
const BATCH: usize = 32;
/// Page sizes timed.
const SIZES: [usize; 3] = [64, 1024, 4096];

/// An allocator under test: zeroed, 64-byte aligned pages.
trait PageAlloc: Sync {
    type Handle;
    fn name(&self) -> &'static str;
    fn alloc(&self, len: usize) -> Self::Handle;
    fn ptr(h: &Self::Handle) -> *mut u8;
    fn free(&self, h: Self::Handle, len: usize);
}

fn layout(len: usize) -> Layout {
    Layout::from_size_align(len, 64).unwrap_or(Layout::new::<u64>())
}

struct Mmsb<'a>(&'a PageAllocator);
impl PageAlloc for Mmsb<'_> {
    type Handle = Block;
    fn name(&self) -> &'static str {
        "mmsb"
    }
    fn alloc(&self, len: usize) -> Block {
        match self.0.alloc_zeroed(len) {
            Ok(b) => b,
            Err(_) => std::alloc::handle_alloc_error(layout(len)),
        }
    }
    fn ptr(h: &Block) -> *mut u8 {
        h.ptr().as_ptr()
    }
    fn free(&self, h: Block, _len: usize) {
        // Frees of blocks just allocated here cannot fail.
        let _ = self.0.free(h);
    }
}

struct Sys<A: GlobalAlloc + Sync>(A, &'static str);
impl<A: GlobalAlloc + Sync> PageAlloc for Sys<A> {
    type Handle = *mut u8;
    fn name(&self) -> &'static str {
        self.1
    }
    fn alloc(&self, len: usize) -> *mut u8 {
        // SAFETY: the layout has non-zero size (len >= 64).
        let p = unsafe { self.0.alloc_zeroed(layout(len)) };
        if p.is_null() {
            std::alloc::handle_alloc_error(layout(len));
        }
        p
    }
    fn ptr(h: &*mut u8) -> *mut u8 {
        *h
    }
    fn free(&self, h: *mut u8, len: usize) {
        // SAFETY: h came from alloc of this allocator with this layout and is
        // freed once.
        unsafe { self.0.dealloc(h, layout(len)) }
    }
}

fn touch(p: *mut u8) {
    // SAFETY: p is the start of a live allocation of at least 64 bytes.
    unsafe { std::ptr::write_volatile(p, 1) };
}

/// `samples` timings (ns per pair) of one pattern on one thread.
fn samples<A: PageAlloc>(a: &A, len: usize, burst: bool, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    let mut held: Vec<A::Handle> = Vec::with_capacity(BATCH);
    for _ in 0..n {
        let t = Instant::now();
        if burst {
            for _ in 0..BATCH {
                let h = a.alloc(len);
                touch(A::ptr(&h));
                held.push(h);
            }
            while let Some(h) = held.pop() {
                a.free(h, len);
            }
        } else {
            for _ in 0..BATCH {
                let h = a.alloc(len);
                touch(A::ptr(&h));
                a.free(h, len);
            }
        }
        out.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    out
}

/// Samples from `threads` threads running the pattern at once.
fn timed<A: PageAlloc>(a: &A, len: usize, burst: bool, n: usize, threads: usize) -> Vec<f64> {
    // Warm up: the first samples carve chunks / map memory.
    samples(a, len, burst, 64);
    if threads == 1 {
        return samples(a, len, burst, n);
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    samples(a, len, burst, 64);
                    barrier.wait();
                    samples(a, len, burst, n)
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// VmRSS of this process in bytes.
fn rss_bytes() -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc: {e}"))?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| "no VmRSS in /proc/self/status".into())
}

/// Resident growth for `n` filled pages of `len` bytes.
fn rss_growth<A: PageAlloc>(a: &A, n: usize, len: usize) -> Result<u64, String> {
    let mut held: Vec<Option<A::Handle>> = Vec::new();
    held.resize_with(n, || None); // touches the handle storage before measuring
    let before = rss_bytes()?;
    for slot in held.iter_mut() {
        let h = a.alloc(len);
        // SAFETY: h owns len bytes.
        unsafe { std::ptr::write_bytes(A::ptr(&h), 0x5A, len) };
        *slot = Some(h);
    }
    let after = rss_bytes()?;
    for h in held.into_iter().flatten() {
        a.free(h, len);
    }
    Ok(after.saturating_sub(before))
}

struct Out {
    results: Vec<Value>,
}

impl Out {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        name: &str,
        value: f64,
        unit: &str,
        yardstick: &str,
        yv: f64,
        ratio: f64,
        target: f64,
    ) {
        println!(
            "{name:<34} {value:>10.2} {unit:<3} {yardstick:<10} {yv:>10.2}  ratio={ratio:.2} target={target}"
        );
        self.results.push(json!({
            "name": name, "value": value, "unit": unit,
            "yardstick": yardstick, "yardstick_value": yv,
            "ratio": ratio, "target": target,
        }));
    }
}

/// One latency case: pattern, page size, threads.
struct Case {
    burst: bool,
    len: usize,
    threads: usize,
}

impl Case {
    fn name(&self) -> String {
        let pattern = if self.burst { "burst32" } else { "pair" };
        format!("{pattern}/{}B/t{}", self.len, self.threads)
    }
}

/// The latency cases, in the order they run (those whose name contains
/// `only`, if given).
fn latency_cases(only: Option<&str>) -> Vec<Case> {
    let mut cases = Vec::new();
    for threads in [1usize, 2] {
        for burst in [false, true] {
            for &len in &SIZES {
                let c = Case {
                    burst,
                    len,
                    threads,
                };
                if only.is_none_or(|o| c.name().contains(o)) {
                    cases.push(c);
                }
            }
        }
    }
    cases
}

/// Samples of every case in this process: per case, one process's
/// `[mmsb, malloc, mimalloc]` sample lists.
fn measure(cases: &[Case], n: usize) -> Vec<Vec<[Vec<f64>; 3]>> {
    let ours = Mmsb(PageAllocator::global());
    let sys = Sys(System, "malloc");
    let mi = Sys(mimalloc::MiMalloc, "mimalloc");
    cases
        .iter()
        .map(|c| {
            let (len, burst, threads) = (c.len, c.burst, c.threads);
            let (mut m, mut s, mut i) = (Vec::new(), Vec::new(), Vec::new());
            // Interleave in rounds so noise hits all three alike. The
            // rounds are short (about a millisecond each at 1 KiB) so that
            // a burst of load from elsewhere on a shared machine spans
            // all three allocators rather than one: with 4 long rounds
            // such bursts decided the p99 ratios.
            let rounds = 16.min(n);
            for _ in 0..rounds {
                m.extend(timed(&ours, len, burst, n / rounds, threads));
                s.extend(timed(&sys, len, burst, n / rounds, threads));
                i.extend(timed(&mi, len, burst, n / rounds, threads));
            }
            vec![[m, s, i]]
        })
        .collect()
}

/// The same, split over `processes` fresh runs of this binary, one after the
/// other (`n / processes` samples each): per case, each process's lists.
///
/// Why: on the lent Intel Xeon, the p50 ratio of one case (`burst32/1024B`,
/// where both allocators spend most of the time zeroing 32 KiB) ranged
/// 0.75-1.24 from one process to the next with the same binary pinned to the
/// same core, and with address-space randomisation off some sizes of the
/// environment (which moves the stack) gave 0.70-0.89 where their neighbours
/// gave 1.09-1.19: a single process measures its layout as much as the
/// allocators (Mytkowicz et al., "Producing wrong data without doing anything
/// obviously wrong", 2009). Processes are the outer level of repetition that
/// averages that out (Kalibera and Jones, "Rigorous benchmarking in
/// reasonable time", 2013); the result keeps each process's own ratio too
/// (`ratio_per_process`).
fn measure_in_processes(
    cases: &[Case],
    n: usize,
    processes: usize,
    only: Option<&str>,
) -> Result<Vec<Vec<[Vec<f64>; 3]>>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let dir = std::env::temp_dir().join(format!("mmsb-bench-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let per = n.div_ceil(processes);
    let mut pooled: Vec<Vec<[Vec<f64>; 3]>> = cases.iter().map(|_| Vec::new()).collect();
    let mut result = Ok(());
    for k in 0..processes {
        println!(
            "latency: process {} of {processes} ({per} samples per case and allocator)",
            k + 1
        );
        let file = dir.join(format!("worker-{k}.json"));
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "bench",
            "alloc",
            "--samples",
            &per.to_string(),
            "--worker-out",
        ])
        .arg(&file);
        if let Some(o) = only {
            cmd.args(["--only", o]);
        }
        let run = cmd
            .output()
            .map_err(|e| format!("starting {}: {e}", exe.display()))
            .and_then(|o| {
                if o.status.success() {
                    // The worker's own lines (its allocator counters).
                    for line in String::from_utf8_lossy(&o.stdout).lines() {
                        println!("  {line}");
                    }
                    std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))
                } else {
                    Err(format!(
                        "latency process {} failed ({}): {}",
                        k + 1,
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    ))
                }
            })
            .and_then(|text| {
                serde_json::from_str::<Vec<Vec<[Vec<f64>; 3]>>>(&text)
                    .map_err(|e| format!("latency process {} wrote bad samples: {e}", k + 1))
            });
        match run {
            Ok(got) if got.len() == cases.len() => {
                for (dst, src) in pooled.iter_mut().zip(got) {
                    dst.extend(src);
                }
            }
            Ok(got) => {
                result = Err(format!(
                    "latency process {} measured {} cases, expected {}",
                    k + 1,
                    got.len(),
                    cases.len()
                ));
            }
            Err(e) => result = Err(e),
        }
        if result.is_err() {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| pooled)
}

/// The process-wide allocator's counters, on one line.
fn print_allocator_stats() {
    let st = PageAllocator::global().stats().totals();
    println!(
        "mmsb allocator: {} allocations, {} frees, {} CAS retries, {} slow-path entries",
        st.allocations, st.frees, st.cas_retries, st.slow_path
    );
}

/// Runs the benchmark.
pub fn run(args: BenchAllocArgs) -> Result<(), String> {
    let (n, rss_pages) = if args.quick {
        (500, 65_536)
    } else {
        (args.samples, args.rss_pages)
    };
    if n == 0 || rss_pages == 0 {
        return Err("--samples and --rss-pages must be at least 1".into());
    }
    if let Some(path) = &args.worker_out {
        let cases = latency_cases(args.only.as_deref());
        let samples = measure(&cases, n);
        print_allocator_stats();
        let text = serde_json::to_string(&samples).map_err(|e| e.to_string())?;
        return std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()));
    }
    if args.processes == 0 {
        return Err("--processes must be at least 1".into());
    }
    if let Some(o) = &args.only {
        if latency_cases(Some(o)).is_empty() {
            return Err(format!(
                "no latency case matches --only {o:?} (cases are named like pair/1024B/t1, burst32/64B/t2)"
            ));
        }
    }
    let load_start = loadavg();
    let mut out = Out { results: vec![] };
    let sys = Sys(System, "malloc");
    let mi = Sys(mimalloc::MiMalloc, "mimalloc");

    // Resident memory first, on a fresh allocator (dropped afterwards, so its
    // chunks go back to the system before the others are measured).
    let raw = (rss_pages * 1024) as u64;
    let pages_name = if rss_pages == 1_000_000 {
        "1M".to_owned()
    } else {
        rss_pages.to_string()
    };
    if args.only.is_none() {
        let ours = rss_growth(&Mmsb(&PageAllocator::new()), rss_pages, 1024)?;
        let name = format!("rss/{pages_name}x1KiB");
        out.push(
            &name,
            ours as f64 / 1e6,
            "MB",
            "raw_bytes",
            raw as f64 / 1e6,
            ours as f64 / raw as f64,
            1.1,
        );
        for (label, growth) in [
            ("mimalloc", rss_growth(&mi, rss_pages, 1024)?),
            ("malloc", rss_growth(&sys, rss_pages, 1024)?),
        ] {
            println!(
                "  ({label}: {:.2} MB resident for the same pages, {:.3}x raw)",
                growth as f64 / 1e6,
                growth as f64 / raw as f64
            );
        }
    }

    let cases = latency_cases(args.only.as_deref());
    let processes = if args.quick { 1 } else { args.processes };
    let mut pooled = if processes == 1 {
        measure(&cases, n)
    } else {
        measure_in_processes(&cases, n, processes, args.only.as_deref())?
    };
    for (case, per_process) in cases.iter().zip(pooled.iter_mut()) {
        // Each process's lists sorted once (for its own ratios), then pooled
        // allocator by allocator.
        let mut all: [Vec<f64>; 3] = Default::default();
        for samples in per_process.iter_mut() {
            for (k, v) in samples.iter_mut().enumerate() {
                v.sort_by(f64::total_cmp);
                all[k].extend_from_slice(v);
            }
        }
        for v in all.iter_mut() {
            v.sort_by(f64::total_cmp);
        }
        let name = case.name();
        for (pname, p) in [("p50", 0.5), ("p99", 0.99)] {
            let ov = percentile(&all[0], p);
            for (k, yname) in [(1usize, sys.name()), (2, mi.name())] {
                let yv = percentile(&all[k], p);
                // The ratio each process alone would have reported.
                let each: Vec<f64> = per_process
                    .iter()
                    .map(|s| percentile(&s[k], p) / percentile(&s[0], p))
                    .collect();
                out.push(
                    &format!("{name}/{pname}/vs_{yname}"),
                    ov,
                    "ns",
                    yname,
                    yv,
                    yv / ov,
                    1.0,
                );
                if each.len() > 1 {
                    let (lo, hi) = each
                        .iter()
                        .fold((f64::INFINITY, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)));
                    println!("{:<34} per process: {lo:.2} .. {hi:.2}", "");
                    if let Some(last) = out.results.last_mut() {
                        last["ratio_per_process"] = json!(each);
                    }
                }
            }
        }
    }
    if processes == 1 {
        print_allocator_stats();
    }

    let mut machine = crate::machine::machine_json();
    machine["note"] = json!(format!(
        "load average (1 min) {} at the start of the run, {} at the end{}",
        load_start,
        loadavg(),
        args.note.map(|n| format!("; {n}")).unwrap_or_default()
    ));
    let doc = json!({
        "group": "alloc",
        "date": crate::machine::today(),
        "machine": machine,
        "quick": args.quick,
        "results": out.results,
    });
    let dir = args.out.unwrap_or_else(crate::default_results_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("alloc.json");
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

//! `mmsb-gpu-check`: the GPU tests and benchmarks, in one run.
//!
//! Run by `benchmark/gpu/run.sh` on a GPU machine. Checks (each compares the
//! GPU against the CPU path on fresh random inputs, outputs poisoned first):
//! delta apply, folds, accumulate, SpMV, forced-failure fallback, the
//! persistent kernel (1M commands in order, none lost), graph replay vs
//! stream execution, pool statistics across 8 streams. Benchmarks (each a
//! ratio to a yardstick measured in the same run): delta apply vs
//! device-to-device copy, pool vs cuMemAlloc/cuMemFree, per-command latency
//! (launch vs persistent kernel vs graph replay), a unified-page wave with
//! and without prefetch, SpMV (cuSPARSE is timed by a Python script).
//!
//! Usage: `mmsb-gpu-check [OUT_DIR] [--quick]`. Writes `gpu-check.json` and
//! `gpu-<group>.json` into OUT_DIR; exits 1 if a check failed, 2 without a GPU.

use mmsb_core::delta::Delta;
use mmsb_core::error::Result;
use mmsb_core::{PageId, PageLocation};
use mmsb_gpu::cuda_device::{Arg, CudaDevice};
use mmsb_gpu::delta_gpu;
use mmsb_gpu::graph_replay::SteadyBatch;
use mmsb_gpu::kernel_cache::KernelSource;
use mmsb_gpu::persistent::{FenceScope, PersistentKernel, PollShape, RingOp};
use mmsb_gpu::semiring_core::{self, Elem, Semiring};
use mmsb_gpu::semiring_gpu::{self, FoldOp, Scratch};
use mmsb_gpu::unified::{PrefetchTuner, UnifiedBuf};
use mmsb_gpu::{Csr, FailurePoint, GpuStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

struct Report {
    checks: Vec<Value>,
    failed: usize,
}

impl Report {
    fn check(&mut self, name: &str, r: std::result::Result<String, String>) {
        match r {
            Ok(detail) => {
                println!("PASS {name}: {detail}");
                self.checks
                    .push(json!({"name": name, "pass": true, "detail": detail}));
            }
            Err(detail) => {
                println!("FAIL {name}: {detail}");
                self.failed += 1;
                self.checks
                    .push(json!({"name": name, "pass": false, "detail": detail}));
            }
        }
    }
}

fn s<T>(r: Result<T>) -> std::result::Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn machine(gpu: &str) -> Value {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({"cpu": cpu_name(), "cores": cores, "gpu": gpu})
}

fn result(
    name: &str,
    value: f64,
    unit: &str,
    yardstick: &str,
    yv: f64,
    ratio: f64,
    target: Value,
) -> Value {
    println!("{name}: {value:.4} {unit} yardstick={yardstick} ({yv:.4}) ratio={ratio:.3} target={target}");
    json!({"name": name, "value": value, "unit": unit, "yardstick": yardstick,
           "yardstick_value": yv, "ratio": ratio, "target": target})
}

fn write_group(dir: &Path, group: &str, gpu: &str, results: Vec<Value>) {
    let doc = json!({"group": group, "date": today(), "machine": machine(gpu), "results": results});
    let path = dir.join(format!("{group}.json"));
    if let Ok(text) = serde_json::to_string_pretty(&doc) {
        let _ = std::fs::write(&path, text + "\n");
        println!("wrote {}", path.display());
    }
}

fn random_delta(rng: &mut StdRng, page: PageId, page_len: usize) -> Delta {
    let len = rng.gen_range(1..=page_len.min(1 << 16));
    let offset = if rng.gen_bool(0.5) {
        (rng.gen_range(0..=page_len - len) / 8) * 8
    } else {
        rng.gen_range(0..=page_len - len)
    };
    let words = len.div_ceil(64);
    let density: f64 = [0.01, 0.5, 0.99, 1.0][rng.gen_range(0..4)];
    let mut mask = vec![0u64; words];
    for i in 0..len {
        if rng.gen_bool(density) {
            mask[i / 64] |= 1 << (i % 64);
        }
    }
    match rng.gen_range(0..3) {
        0 => Delta::dense(page, offset as u64, (0..len).map(|_| rng.gen()).collect()),
        1 => Delta::masked(
            page,
            offset as u64,
            (0..len).map(|_| rng.gen()).collect(),
            mask,
        ),
        _ => {
            let n = mask.iter().map(|w| w.count_ones() as usize).sum();
            Delta::sparse(
                page,
                offset as u64,
                len as u64,
                mask,
                (0..n).map(|_| rng.gen()).collect(),
            )
        }
    }
}

/// GPU store vs CPU store on the same random pages and batches.
fn check_delta_apply(
    dev: &Arc<CudaDevice>,
    rng: &mut StdRng,
    batches: usize,
    forced: Option<FailurePoint>,
    host_copy: bool,
) -> std::result::Result<String, String> {
    let mut gpu = GpuStore::with_device(dev.clone());
    let mut cpu = GpuStore::cpu_only("reference");
    s(gpu.set_host_copy(host_copy))?;
    let sizes = [4096usize, 65536, 1 << 20, 4096 + 17];
    let mut pages = Vec::new();
    for i in 0..24u64 {
        let id = PageId(i + 1);
        let size = sizes[i as usize % sizes.len()];
        let loc = if i % 3 == 2 {
            PageLocation::Unified
        } else {
            PageLocation::Gpu
        };
        let at = s(gpu.create_page(id, size, loc))?;
        if at != loc {
            return Err(format!("page {id} placed in {at:?}, wanted {loc:?}"));
        }
        s(cpu.create_page(id, size, PageLocation::Cpu))?;
        // Poison: random bytes everywhere, the same on both sides.
        let poison: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
        let d = Delta::dense(id, 0, poison);
        s(gpu.apply_batch(std::slice::from_ref(&d)))?;
        s(cpu.apply_batch(std::slice::from_ref(&d)))?;
        pages.push((id, size));
    }
    gpu.set_forced_failure(forced);
    let mut deltas_total = 0;
    for _ in 0..batches {
        let n = rng.gen_range(1..48);
        let batch: Vec<Delta> = (0..n)
            .map(|_| {
                let (id, size) = pages[rng.gen_range(0..pages.len())];
                random_delta(rng, id, size)
            })
            .collect();
        deltas_total += n;
        s(gpu.apply_batch(&batch))?;
        s(cpu.apply_batch(&batch))?;
    }
    for &(id, _) in &pages {
        let a = s(gpu.read(id))?;
        let b = s(cpu.read(id))?;
        if a != b {
            let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(0);
            return Err(format!("page {id} differs from the CPU at byte {first}"));
        }
        if s(gpu.epoch(id))? != s(cpu.epoch(id))? {
            return Err(format!("page {id} epoch differs"));
        }
    }
    Ok(format!(
        "{batches} batches, {deltas_total} deltas, 24 pages equal; stats {:?}",
        gpu.stats()
    ))
}

/// `mmsb_apply_one` and its benchmark variants on one long range with a 1%
/// mask plus some full and all-zero stretches, dense and sparse payloads, at
/// the benchmark's grid and at tiny grids, equals a byte loop on the host.
fn check_apply_one(dev: &Arc<CudaDevice>, rng: &mut StdRng) -> std::result::Result<String, String> {
    let n: usize = (8 << 20) + 4096 + 200 + 3; // not a multiple of a run or a lane
    let words = n.div_ceil(64);
    let mut mask: Vec<u64> = (0..words)
        .map(|i| match i % 5000 {
            0..=40 => u64::MAX,
            41..=2000 => 0,
            _ if rng.gen_bool(0.01) => rng.gen(),
            _ => 0,
        })
        .collect();
    mask[words - 1] = rng.gen::<u64>() & ((1u64 << (n % 64)) - 1);
    let bit = |i: usize| (mask[i / 64] >> (i % 64)) & 1 == 1;
    let old: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
    let src: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
    let set: usize = mask.iter().map(|w| w.count_ones() as usize).sum();
    let vals: Vec<u8> = (0..set.max(1)).map(|_| rng.gen()).collect();
    let mut prefix = Vec::with_capacity(words);
    let mut run = 0u32;
    for w in &mask {
        prefix.push(run);
        run += w.count_ones();
    }
    let want_dense: Vec<u8> = (0..n)
        .map(|i| if bit(i) { src[i] } else { old[i] })
        .collect();
    let mut want_sparse = old.clone();
    let mut k = 0;
    for (i, b) in want_sparse.iter_mut().enumerate() {
        if bit(i) {
            *b = vals[k];
            k += 1;
        }
    }
    let mut sc = Scratch::new(dev);
    let dst = s(sc.alloc(n))?;
    let srcd = s(sc.upload(&src))?;
    let valsd = s(sc.upload(&vals))?;
    let maskd = s(sc.upload(semiring_gpu::u64_bytes(&mask)))?;
    let pred = s(sc.upload(semiring_gpu::u32_bytes(&prefix)))?;
    let mut runs = 0;
    for kernel in [
        "mmsb_apply_one",
        "mmsb_apply_one_lanes16",
        "mmsb_apply_one_runs",
    ] {
        for blocks in [delta_gpu::one_grid(dev, n as u64), 1, 3] {
            for (payload, pre, want) in [(srcd, 0u64, &want_dense), (valsd, pred, &want_sparse)] {
                s(dev.upload(dst, &old))?;
                s(delta_gpu::launch_one_named(
                    dev,
                    kernel,
                    [dst, payload, maskd, pre, n as u64],
                    blocks,
                ))?;
                let mut got = vec![0u8; n];
                s(dev.download(dst, &mut got))?;
                if let Some(i) = (0..n).find(|&i| got[i] != want[i]) {
                    return Err(format!(
                        "{kernel} blocks {blocks} sparse={} byte {i}: gpu {} want {}",
                        pre != 0,
                        got[i],
                        want[i]
                    ));
                }
                runs += 1;
            }
        }
    }
    Ok(format!(
        "{runs} launches over {n} bytes, {set} mask bits set: equal"
    ))
}

/// Equal, or (for float sums, whose order differs) within a relative 1e-3.
fn close<T: Elem>(a: T, b: T, float_sum: bool) -> bool {
    let (x, y) = (a.as_f64(), b.as_f64());
    if a == b || (x.is_nan() && y.is_nan()) {
        return true;
    }
    float_sum && (x - y).abs() <= 1e-3 * x.abs().max(y.abs()).max(1.0)
}

fn is_float<T: Elem>() -> bool {
    matches!(T::TYPE, mmsb_gpu::ElemType::F32 | mmsb_gpu::ElemType::F64)
}

trait Gen: Elem {
    fn gen_small(rng: &mut StdRng, s: Semiring) -> Self;
}
impl Gen for f32 {
    fn gen_small(rng: &mut StdRng, s: Semiring) -> f32 {
        match s {
            Semiring::PlusTimes => rng.gen_range(0.999..1.001),
            Semiring::OrAnd => rng.gen_range(0..2) as f32,
            _ => rng.gen_range(-100.0..100.0),
        }
    }
}
impl Gen for f64 {
    fn gen_small(rng: &mut StdRng, s: Semiring) -> f64 {
        match s {
            Semiring::PlusTimes => rng.gen_range(0.999..1.001),
            Semiring::OrAnd => rng.gen_range(0..2) as f64,
            _ => rng.gen_range(-100.0..100.0),
        }
    }
}
impl Gen for i32 {
    fn gen_small(rng: &mut StdRng, s: Semiring) -> i32 {
        match s {
            Semiring::OrAnd => rng.gen_range(0..2),
            _ => rng.gen_range(-1000..1000),
        }
    }
}
impl Gen for i64 {
    fn gen_small(rng: &mut StdRng, s: Semiring) -> i64 {
        match s {
            Semiring::OrAnd => rng.gen_range(0..2),
            _ => rng.gen_range(-1_000_000..1_000_000),
        }
    }
}
impl Gen for u8 {
    fn gen_small(rng: &mut StdRng, s: Semiring) -> u8 {
        match s {
            Semiring::OrAnd => rng.gen_range(0..2),
            Semiring::PlusTimes => rng.gen(),
            _ => rng.gen_range(0..20),
        }
    }
}

fn check_semiring_type<T: Gen>(
    dev: &CudaDevice,
    rng: &mut StdRng,
    n_big: usize,
) -> std::result::Result<String, String> {
    let mut done = 0;
    for sr in Semiring::ALL {
        if !sr.supports(T::TYPE) {
            continue; // a pair mmsb-core does not define
        }
        // Float sums (⊕ of plus-times, ⊗ of min-plus and max-plus) depend on
        // the order of the additions: compared with a tolerance.
        let float_sum = is_float::<T>() && sr == Semiring::PlusTimes;
        let float_mul_sum = is_float::<T>() && sr != Semiring::OrAnd;
        for &n in &[1usize, 257, 4099, n_big] {
            let x: Vec<T> = (0..n).map(|_| T::gen_small(rng, sr)).collect();
            for op in [FoldOp::Add, FoldOp::Mul] {
                let size = std::mem::size_of::<T>();
                let mut sc = Scratch::new(dev);
                let xd = s(sc.upload(T::slice_as_bytes(&x)))?;
                let partials =
                    s(sc.alloc(semiring_gpu::fold_blocks(dev, n as u64) as usize * size))?;
                let out = s(sc.alloc(size))?;
                s(dev.memset(out, 0xA5, size))?;
                s(semiring_gpu::fold_device(
                    dev,
                    op,
                    sr,
                    T::TYPE,
                    xd,
                    n as u64,
                    partials,
                    out,
                ))?;
                let mut b = vec![0u8; size];
                s(dev.download(out, &mut b))?;
                let got = semiring_gpu::from_bytes::<T>(&b)[0];
                let want = s(match op {
                    FoldOp::Add => semiring_core::fold_add(sr, &x),
                    FoldOp::Mul => semiring_core::fold_mul(sr, &x),
                })?;
                let tol = match op {
                    FoldOp::Add => float_sum,
                    FoldOp::Mul => float_mul_sum,
                };
                if !close(got, want, tol) {
                    return Err(format!(
                        "{op:?} {} {} n={n}: gpu {got:?} cpu {want:?}",
                        sr.name(),
                        T::TYPE.name()
                    ));
                }
                done += 1;
            }
            // accumulate, with and without a mask
            let t: Vec<T> = (0..n).map(|_| T::gen_small(rng, sr)).collect();
            let mask: Vec<u64> = (0..n.div_ceil(64)).map(|_| rng.gen()).collect();
            let mask = {
                let mut m = mask;
                if n % 64 != 0 {
                    if let Some(l) = m.last_mut() {
                        *l &= (1u64 << (n % 64)) - 1;
                    }
                }
                m
            };
            for m in [None, Some(mask.as_slice())] {
                let mut c_gpu = x.clone();
                let mut c_cpu = x.clone();
                s(semiring_gpu::accumulate_host(dev, sr, &mut c_gpu, &t, m))?;
                s(semiring_core::accumulate(sr, &mut c_cpu, &t, m))?;
                if c_gpu.iter().zip(&c_cpu).any(|(a, b)| !close(*a, *b, false)) {
                    return Err(format!(
                        "accumulate {} {} n={n} mask={}",
                        sr.name(),
                        T::TYPE.name(),
                        m.is_some()
                    ));
                }
                done += 1;
            }
        }
        // SpMV on a random CSR with rows of varied length, y poisoned.
        for &(nrows, avg) in &[(1000usize, 3usize), (20000, 17), (5000, 70)] {
            let a = random_csr::<T>(rng, nrows, nrows, avg, sr);
            let x: Vec<T> = (0..nrows).map(|_| T::gen_small(rng, sr)).collect();
            let mut want = vec![T::ZERO; nrows];
            s(semiring_core::spmv(sr, &a, &x, &mut want))?;
            let mut sc = Scratch::new(dev);
            let ad = s(semiring_gpu::upload_csr(&mut sc, &a))?;
            let xd = s(sc.upload(T::slice_as_bytes(&x)))?;
            let yb = nrows * std::mem::size_of::<T>();
            let yd = s(sc.alloc(yb))?;
            s(dev.memset(yd, 0xA5, yb))?;
            s(semiring_gpu::spmv_device(dev, sr, T::TYPE, &ad, xd, yd))?;
            let mut b = vec![0u8; yb];
            s(dev.download(yd, &mut b))?;
            let got = semiring_gpu::from_bytes::<T>(&b);
            if let Some(r) = (0..nrows).find(|&r| !close(got[r], want[r], float_sum)) {
                return Err(format!(
                    "spmv {} {} row {r}: gpu {:?} cpu {:?}",
                    sr.name(),
                    T::TYPE.name(),
                    got[r],
                    want[r]
                ));
            }
            done += 1;
        }
    }
    Ok(format!("{done} comparisons"))
}

fn random_csr<T: Gen>(
    rng: &mut StdRng,
    nrows: usize,
    ncols: usize,
    avg: usize,
    sr: Semiring,
) -> Csr<T> {
    let mut row_ptr = vec![0u32];
    let mut cols = Vec::new();
    let mut vals = Vec::new();
    for _ in 0..nrows {
        let k = rng.gen_range(0..=2 * avg);
        for _ in 0..k {
            cols.push(rng.gen_range(0..ncols) as u32);
            vals.push(T::gen_small(rng, sr));
        }
        row_ptr.push(cols.len() as u32);
    }
    Csr {
        nrows,
        ncols,
        row_ptr,
        cols,
        vals,
    }
}

/// A gpu-sync edge of a durable (in-memory) store: after the parent changes,
/// `sync_from` puts the child's bytes and epoch in device memory.
fn check_gpu_sync(dev: &Arc<CudaDevice>) -> std::result::Result<String, String> {
    use mmsb_core::{EdgeKind, Op, Store};
    let store = Store::in_memory();
    let r = s(store.commit(vec![
        Op::CreatePage {
            size: 4096,
            location: PageLocation::Cpu,
        },
        Op::CreatePage {
            size: 1 << 20,
            location: PageLocation::Cpu,
        },
    ]))?;
    let (a, b) = (r.created[0], r.created[1]);
    s(store.add_edge(a, b, EdgeKind::GpuSync, None))?;
    let mut gs = GpuStore::with_device(dev.clone());
    let _ = s(gs.sync_from(&store, PageLocation::Gpu))?;
    let mut rng = StdRng::seed_from_u64(9);
    for round in 0..3 {
        let bytes: Vec<u8> = (0..1 << 20).map(|_| rng.gen()).collect();
        s(store.commit(vec![Op::Delta(Delta::dense(b, 0, bytes))]))?;
        s(store.commit(vec![Op::Delta(Delta::dense(
            a,
            0,
            vec![round as u8 + 1; 8],
        ))]))?;
        let synced = s(gs.sync_from(&store, PageLocation::Gpu))?;
        if synced != vec![b] {
            return Err(format!("round {round}: synced {synced:?}, expected [{b}]"));
        }
        if s(gs.location(b))? != PageLocation::Gpu || s(gs.read(b))? != s(store.read(b))? {
            return Err(format!(
                "round {round}: the device copy differs from the store"
            ));
        }
        if s(gs.epoch(b))? != s(store.page(b))?.epoch() {
            return Err(format!("round {round}: epoch differs"));
        }
    }
    Ok("3 waves: the child's device copy equals the store's page (bytes, epoch)".into())
}

/// The store's graph-replay toggle: 20 steady waves through a store with
/// replay on equal the same waves through a store with it off.
fn check_store_graph_replay(
    dev: &Arc<CudaDevice>,
    rng: &mut StdRng,
) -> std::result::Result<String, String> {
    let mut on = GpuStore::with_device(dev.clone());
    let mut off = GpuStore::with_device(dev.clone());
    on.set_graph_replay(true);
    let (pages, size) = (64u64, 4096usize);
    for st in [&mut on, &mut off] {
        for p in 1..=pages {
            s(st.create_page(PageId(p), size, PageLocation::Gpu))?;
        }
    }
    let masks: Vec<Vec<u64>> = (0..pages)
        .map(|_| (0..size / 64).map(|_| rng.gen()).collect())
        .collect();
    for _ in 0..20 {
        let batch: Vec<Delta> = (1..=pages)
            .map(|p| {
                let bytes: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
                Delta::masked(PageId(p), 0, bytes, masks[(p - 1) as usize].clone())
            })
            .collect();
        s(on.apply_batch(&batch))?;
        s(off.apply_batch(&batch))?;
    }
    for p in 1..=pages {
        if s(on.read(PageId(p)))? != s(off.read(PageId(p)))? {
            return Err(format!("page {p} differs between replay and stream"));
        }
    }
    let st = on.stats();
    if (st.graph_captures, st.graph_replays) != (1, 19) || st.kernel_failures != 0 {
        return Err(format!("unexpected counters {st:?}"));
    }
    Ok(format!(
        "20 waves of {pages} masked 4 KiB deltas: 1 capture, 19 replays, bytes equal"
    ))
}

/// A random numeric (accumulate) delta over small integer values (exact in
/// every dtype): dense, masked or sparse, over any (semiring, dtype) pair
/// mmsb-core defines for the page's dtype (page `p` holds
/// `DType::ALL[p - 1]`; pairs without device kernels take the CPU range path).
fn random_numeric_delta(rng: &mut StdRng, page: PageId, page_len: usize) -> Delta {
    use mmsb_core::delta::Payload;
    use mmsb_core::dtype::DType;
    use mmsb_core::semiring::SemiringKind;
    let pairs: Vec<(SemiringKind, DType)> = SemiringKind::ALL
        .iter()
        .flat_map(|&k| DType::ALL.iter().map(move |&d| (k, d)))
        .filter(|&(k, d)| k.supports(d))
        // One dtype per page, as numeric pages have: bytes of another type
        // read as floats would be NaNs, whose bit patterns the device's
        // float sums do not promise to keep (see docs/gpu.md).
        .filter(|&(_, d)| d == DType::ALL[(page.0 as usize - 1) % DType::ALL.len()])
        .collect();
    let (kind, dtype) = pairs[rng.gen_range(0..pairs.len())];
    let size = dtype.size() as usize;
    let elems = page_len / size;
    let count = rng.gen_range(1..elems.min(4096));
    let first = rng.gen_range(0..elems - count);
    let bytes: Vec<u8> = (0..count)
        .flat_map(|_| {
            let v: i16 = rng.gen_range(-5..6);
            match dtype {
                DType::U8 => vec![v as u8],
                DType::Bool => vec![(v & 1) as u8],
                DType::I32 => (v as i32).to_le_bytes().to_vec(),
                DType::U32 => (v as u32).to_le_bytes().to_vec(),
                DType::I64 => (v as i64).to_le_bytes().to_vec(),
                DType::U64 => (v as u64).to_le_bytes().to_vec(),
                DType::F32 => (v as f32).to_le_bytes().to_vec(),
                DType::F64 => (v as f64).to_le_bytes().to_vec(),
            }
        })
        .collect();
    let form = rng.gen_range(0..3);
    let flags: Vec<bool> = (0..count).map(|_| rng.gen_bool(0.3)).collect();
    let mut d = match mmsb_core::numeric_delta::accumulate_bytes(
        page,
        kind,
        dtype,
        first as u64,
        bytes,
        (form > 0).then_some(&flags[..]),
    ) {
        Ok(d) => d,
        Err(_) => return Delta::dense(page, 0, vec![1]),
    };
    if form == 2 {
        let packed: Vec<u8> = (0..count)
            .filter(|&j| flags[j])
            .flat_map(|j| d.payload.bytes()[j * size..(j + 1) * size].to_vec())
            .collect();
        d.payload = Payload::Sparse(packed);
    }
    d
}

/// Numeric deltas (`page ⊕= payload`) mixed with overwrite deltas on device
/// pages equal mmsb-core's `apply_reference` on host vectors, with and
/// without a forced kernel failure and host copies.
fn check_numeric_deltas(
    dev: &Arc<CudaDevice>,
    rng: &mut StdRng,
    batches: usize,
) -> std::result::Result<String, String> {
    use mmsb_core::apply::apply_reference;
    let (pages, size) = (8u64, 1usize << 16);
    let mut summary = Vec::new();
    for (fail, host_copy) in [(false, false), (true, false), (true, true)] {
        let mut st = GpuStore::with_device(dev.clone());
        s(st.set_host_copy(host_copy))?;
        let mut model = vec![vec![0u8; size]; pages as usize];
        for p in 1..=pages {
            let at = if p % 4 == 0 {
                PageLocation::Unified
            } else {
                PageLocation::Gpu
            };
            s(st.create_page(PageId(p), size, at))?;
        }
        for b in 0..batches {
            let before = model.clone();
            let batch: Vec<Delta> = (0..rng.gen_range(1..12))
                .map(|_| {
                    let page = PageId(rng.gen_range(1..=pages));
                    if rng.gen_bool(0.25) {
                        // Zeros over whole 8-byte words: valid in every
                        // dtype (random bytes would make NaNs and denormals).
                        let words = rng.gen_range(1..size / 64);
                        let at = rng.gen_range(0..size / 8 - words);
                        Delta::dense(page, (at * 8) as u64, vec![0; words * 8])
                    } else {
                        random_numeric_delta(rng, page, size)
                    }
                })
                .collect();
            st.set_forced_failure((fail && b % 5 == 1).then_some(FailurePoint::Kernel));
            s(st.apply_batch(&batch))?;
            for d in &batch {
                let (lo, hi) = (d.offset as usize, (d.offset + d.len) as usize);
                s(apply_reference(
                    &mut model[(d.page.0 - 1) as usize][lo..hi],
                    d,
                ))?;
            }
            st.set_forced_failure(None);
            for p in 1..=pages {
                let got = s(st.read(PageId(p)))?;
                let want = &model[(p - 1) as usize];
                if let Some(i) = (0..size).find(|&i| got[i] != want[i]) {
                    let ds: Vec<String> = batch
                        .iter()
                        .map(|d| {
                            format!(
                                "{}:{:?}@{}+{} mask={} sparse={}",
                                d.page,
                                d.accumulator,
                                d.offset,
                                d.len,
                                d.mask.is_some(),
                                d.payload.is_sparse()
                            )
                        })
                        .collect();
                    let d0 = &batch[0];
                    let rel = i.saturating_sub(d0.offset as usize);
                    let mb = d0.mask.as_ref().map(|m| (m[rel / 64] >> (rel % 64)) & 1);
                    let pl = d0.payload.bytes();
                    return Err(format!(
                        "fail={fail} host_copy={host_copy} batch {b}: page {p} byte {i}: got {:?} want {:?} before {:?}; mask bit {mb:?}; payload len {} head {:?}; batch [{}]",
                        &got[i & !7..(i & !7) + 8],
                        &want[i & !7..(i & !7) + 8],
                        &before[(p - 1) as usize][i & !7..(i & !7) + 8],
                        pl.len(),
                        &pl[..pl.len().min(16)],
                        ds.join(", ")
                    ));
                }
            }
        }
        st.set_forced_failure(None);
        for p in 1..=pages {
            if s(st.read(PageId(p)))? != model[(p - 1) as usize] {
                return Err(format!(
                    "fail={fail} host_copy={host_copy}: page {p} differs from apply_reference; {:?}",
                    st.stats()
                ));
            }
        }
        let stt = st.stats();
        if !fail && stt.numeric_deltas_on_gpu == 0 {
            return Err("no numeric delta ran on the device".into());
        }
        summary.push(format!(
            "fail={fail} host_copy={host_copy}: {} on the device, {} on the CPU range, {} kernel failures",
            stt.numeric_deltas_on_gpu, stt.numeric_deltas_on_cpu, stt.kernel_failures
        ));
    }
    Ok(format!("{batches} batches each: {}", summary.join("; ")))
}

/// `GpuStore::follow_commit`: each commit's wave of a durable store runs on
/// the device (built-in functions as kernels) and every page equals the
/// store's (bytes and epochs), 20 commits on 200 pages of 4-64 KiB.
fn check_commit_wave(
    dev: &Arc<CudaDevice>,
    rng: &mut StdRng,
) -> std::result::Result<String, String> {
    use mmsb_core::recompute::{ByteTransform, RecomputeFn};
    use mmsb_core::{EdgeKind, Op, Store};
    use mmsb_gpu::DeviceFn;
    use std::collections::HashMap;
    let store = Store::in_memory();
    let n = 200;
    let ops = (0..n)
        .map(|i| Op::CreatePage {
            size: [4096u64, 4099, 65536][i % 3],
            location: PageLocation::Cpu,
        })
        .collect();
    let pages = s(store.commit(ops))?.created;
    let mut fns = HashMap::new();
    for i in 20..n {
        for _ in 0..rng.gen_range(1..3) {
            let q = pages[rng.gen_range(0..i)];
            let _ = store.add_edge(q, pages[i], EdgeKind::Data, None);
        }
        let f = match rng.gen_range(0..3) {
            0 => RecomputeFn::Passthrough,
            1 => RecomputeFn::Transform(ByteTransform::XorConst(rng.gen())),
            _ => RecomputeFn::Transform(ByteTransform::AddConst(rng.gen())),
        };
        let d = DeviceFn::from_recompute(&f).ok_or("no device form")?;
        fns.insert(s(store.set_recompute(pages[i], f))?, d);
    }
    let mut gs = GpuStore::with_device(dev.clone());
    for (i, &p) in pages.iter().enumerate() {
        let page = s(store.page(p))?;
        let at = if i % 10 == 9 {
            PageLocation::Cpu
        } else {
            PageLocation::Gpu
        };
        s(gs.mirror_page(p, page.bytes(), page.epoch(), at))?;
    }
    let mut on_device = 0;
    for round in 0..20 {
        let mut deltas = Vec::new();
        for &p in &pages[..20] {
            if rng.gen_bool(0.4) {
                let bytes: Vec<u8> = (0..rng.gen_range(1..256)).map(|_| rng.gen()).collect();
                deltas.push(Delta::dense(p, rng.gen_range(0..3000), bytes));
            }
        }
        let receipt = s(store.commit(deltas.iter().cloned().map(Op::Delta).collect()))?;
        let rep = match gs.follow_commit(&store, &deltas, &receipt, &fns, true) {
            Ok(r) => r,
            Err(e) => {
                let pr = &receipt.propagation;
                let info: Vec<String> = pages
                    .iter()
                    .filter(|&&p| pr.recomputed.contains(&p))
                    .filter(|&&p| gs.read(p).ok() != store.read(p).ok())
                    .map(|&p| {
                        let ins: Vec<String> = store
                            .edges()
                            .iter()
                            .filter(|x| x.child == p && x.kind == EdgeKind::Data)
                            .map(|x| {
                                format!(
                                    "{}(delta {}, changed {}, recomputed {})",
                                    x.parent,
                                    deltas.iter().any(|d| d.page == x.parent),
                                    pr.changed.iter().any(|c| c.0 == x.parent),
                                    pr.recomputed.contains(&x.parent)
                                )
                            })
                            .collect();
                        format!("{p} <- [{}]", ins.join(", "))
                    })
                    .collect();
                return Err(format!(
                    "round {round}: {e}; differing: {}",
                    info.join("; ")
                ));
            }
        };
        on_device += rep.on_device;
        for &p in &pages {
            let page = s(store.page(p))?;
            if s(gs.read(p))? != page.bytes() || s(gs.epoch(p))? != page.epoch() {
                return Err(format!("round {round}: page {p} differs from the store"));
            }
        }
    }
    if on_device == 0 || gs.stats().kernel_failures != 0 {
        return Err(format!("on device {on_device}, {:?}", gs.stats()));
    }
    Ok(format!(
        "{n} pages, 20 commits: {on_device} commands on the device, every page equals the store"
    ))
}

/// `GpuMirror`: device copies follow every commit of the durable store by themselves.
fn check_gpu_mirror(
    dev: &Arc<CudaDevice>,
    rng: &mut StdRng,
) -> std::result::Result<String, String> {
    use mmsb_core::{EdgeKind, Op, Store};
    use std::sync::Mutex;
    let store = Arc::new(Store::in_memory());
    let r = s(store.commit(vec![
        Op::CreatePage {
            size: 64,
            location: PageLocation::Cpu,
        },
        Op::CreatePage {
            size: 1 << 16,
            location: PageLocation::Cpu,
        },
    ]))?;
    let (a, b) = (r.created[0], r.created[1]);
    s(store.add_edge(a, b, EdgeKind::GpuSync, None))?;
    let gpu = Arc::new(Mutex::new(GpuStore::with_device(dev.clone())));
    let mirror = s(mmsb_gpu::GpuMirror::attach(
        &store,
        gpu.clone(),
        PageLocation::Gpu,
    ))?;
    for round in 0..5u8 {
        let bytes: Vec<u8> = (0..1 << 16).map(|_| rng.gen()).collect();
        s(store.commit(vec![
            Op::Delta(Delta::dense(b, 0, bytes)),
            Op::Delta(Delta::dense(a, 0, vec![round + 1; 8])),
        ]))?;
        let mut g = gpu.lock().map_err(|_| "poisoned".to_string())?;
        if s(g.location(b))? != PageLocation::Gpu || s(g.read(b))? != s(store.read(b))? {
            return Err(format!(
                "round {round}: the device copy differs from the store"
            ));
        }
    }
    let st = mirror.stats();
    if st.refreshes != 5 || st.errors != 0 {
        return Err(format!("{st:?}"));
    }
    Ok(format!(
        "5 commits, device copy refreshed after each: {st:?}"
    ))
}

/// Device waves (`GpuStore::run_wave`) equal the CPU engine's waves on a
/// random DAG of passthrough / xor / add pages on the device.
/// A full wave of mmsb-core semiring networks (40 nodes of 20k entries,
/// random DAG, CSR weights of ~8 nonzeros a row, some scalar and diagonal
/// weights) on the device equals `SemiringNetwork::run_full` on the CPU:
/// exactly for min-plus f64, max-plus i64 and or-and u8, within 1e-9 relative
/// for plus-times f64.
fn check_semiring_network_wave(
    dev: &Arc<CudaDevice>,
    rng: &mut StdRng,
) -> std::result::Result<String, String> {
    use mmsb_core::semiring::{MaxPlus, MinPlus, OrAnd, PlusTimes, Semiring as CoreSemiring};
    use mmsb_core::{SemiringNetwork, Weight};
    fn run<S: CoreSemiring>(
        dev: &Arc<CudaDevice>,
        rng: &mut StdRng,
        sr: S,
        gen: impl Fn(&mut StdRng) -> S::Elem,
        tol: f64,
    ) -> std::result::Result<String, String>
    where
        S::Elem: Elem,
    {
        let (n, len) = (40usize, 20_000usize);
        let mut net = SemiringNetwork::new(sr.clone());
        for i in 0..n {
            let input = (i % 3 != 2).then(|| (0..len).map(|_| gen(rng)).collect());
            s(net.add_node(PageId(i as u64 + 1), len, input))?;
        }
        let mut edges = 0;
        for j in 1..n {
            for _ in 0..rng.gen_range(1..4usize) {
                let i = rng.gen_range(0..j);
                if net
                    .weight(PageId(i as u64 + 1), PageId(j as u64 + 1))
                    .is_some()
                {
                    continue;
                }
                let w = match rng.gen_range(0..5) {
                    0 => Weight::Scalar(gen(rng)),
                    1 => Weight::Diagonal((0..len).map(|_| gen(rng)).collect()),
                    _ => {
                        let trip: Vec<(usize, usize, S::Elem)> = (0..len * 8)
                            .map(|_| (rng.gen_range(0..len), rng.gen_range(0..len), gen(rng)))
                            .collect();
                        Weight::Matrix(s(mmsb_core::Csr::from_triplets(&sr, len, len, &trip))?)
                    }
                };
                s(net.add_edge(PageId(i as u64 + 1), PageId(j as u64 + 1), w))?;
                edges += 1;
            }
        }
        let mut gs = GpuStore::with_device(dev.clone());
        let t = Instant::now();
        let got = s(gs.run_semiring_wave(&net))?;
        let dt = t.elapsed();
        if gs.stats().gpu_ops != 1 || gs.stats().ops_finished_on_cpu != 0 {
            return Err(format!("not run on the device: {:?}", gs.stats()));
        }
        s(net.run_full())?;
        for (id, v) in &got {
            let want = s(net.value(*id))?;
            if let Some(k) = (0..len).find(|&k| !close_tol(v[k], want[k], tol)) {
                return Err(format!(
                    "node {id:?} entry {k}: gpu {:?} cpu {:?}",
                    v[k], want[k]
                ));
            }
        }
        Ok(format!(
            "{}: {n} nodes x {len}, {edges} edges, device wave {:.1} ms",
            std::any::type_name::<S>().rsplit("::").next().unwrap_or(""),
            dt.as_secs_f64() * 1e3
        ))
    }
    let out = [
        run(
            dev,
            rng,
            PlusTimes::<f64>::new(),
            |r| r.gen_range(-0.1..0.1),
            1e-9,
        )?,
        run(
            dev,
            rng,
            MinPlus::<f64>::new(),
            |r| r.gen_range(0..1000) as f64 * 0.5,
            0.0,
        )?,
        run(
            dev,
            rng,
            MaxPlus::<i64>::new(),
            |r| r.gen_range(-1000..1000),
            0.0,
        )?,
        run(
            dev,
            rng,
            OrAnd::<u8>::new(),
            |r| (r.gen_range(0..10) == 0) as u8,
            0.0,
        )?,
    ];
    Ok(out.join("; "))
}

/// `a == b`, or within `tol` relative when `tol > 0`.
fn close_tol<T: Elem>(a: T, b: T, tol: f64) -> bool {
    if a == b {
        return true;
    }
    let (x, y) = (a.as_f64(), b.as_f64());
    tol > 0.0 && (x - y).abs() <= tol * x.abs().max(y.abs()).max(1.0)
}

fn check_device_wave(
    dev: &Arc<CudaDevice>,
    rng: &mut StdRng,
    fail: bool,
    replay: bool,
) -> std::result::Result<String, String> {
    use mmsb_core::propagation::Engine;
    use mmsb_core::recompute::{ByteTransform, RecomputeFn};
    use mmsb_core::EdgeKind;
    use mmsb_gpu::DeviceFn;
    use std::collections::{BTreeSet, HashMap};
    let n = 300;
    let mut engine = Engine::new();
    let mut gs = GpuStore::with_device(dev.clone());
    // With replay: a twin store runs the same waves on the stream path.
    let mut twin = GpuStore::with_device(dev.clone());
    gs.set_graph_replay(replay);
    let mut pages = Vec::new();
    let mut fns = HashMap::new();
    let mut sources = Vec::new();
    for i in 0..n {
        let size = [4096u64, 4099, 65536][i % 3];
        let id = s(engine.create_page(size, PageLocation::Cpu))?;
        let at = if i % 10 == 9 {
            PageLocation::Cpu
        } else {
            PageLocation::Gpu
        };
        s(gs.create_page(id, size as usize, at))?;
        if replay {
            s(twin.create_page(id, size as usize, at))?;
        }
        pages.push(id);
        if i < 20 {
            sources.push(id);
            continue;
        }
        for _ in 0..rng.gen_range(1..3) {
            let q = pages[rng.gen_range(0..i)];
            let _ = engine.add_edge(q, id, EdgeKind::Data, None);
        }
        let f = match rng.gen_range(0..3) {
            0 => RecomputeFn::Passthrough,
            1 => RecomputeFn::Transform(ByteTransform::XorConst(rng.gen())),
            _ => RecomputeFn::Transform(ByteTransform::AddConst(rng.gen())),
        };
        let d = DeviceFn::from_recompute(&f).ok_or("no device form")?;
        fns.insert(s(engine.set_recompute(id, f))?, d);
    }
    if fail {
        gs.set_forced_failure(Some(FailurePoint::Kernel));
    }
    let (mut on_device, mut recomputed) = (0, 0);
    for round in 0..20 {
        let mut deltas = Vec::new();
        for &p in &sources {
            if replay {
                // Steady: every source changes each round, so every wave
                // runs the same commands.
                let bytes: Vec<u8> = (0..256).map(|_| rng.gen()).collect();
                deltas.push(Delta::dense(p, 0, bytes));
                continue;
            }
            if !rng.gen_bool(0.3) {
                continue;
            }
            let len = rng.gen_range(1..256);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen_range(0..4)).collect();
            deltas.push(Delta::dense(p, rng.gen_range(0..3000), bytes));
        }
        let before: Vec<Vec<u8>> = s(sources.iter().map(|&p| engine.store().read(p)).collect())?;
        let plan = s(engine.plan_commit(&deltas))?;
        s(engine.apply_commit(&plan))?;
        let mut roots = BTreeSet::new();
        for (k, &p) in sources.iter().enumerate() {
            if s(engine.store().read(p))? != before[k] {
                roots.insert(p);
            }
        }
        s(gs.apply_batch(&deltas))?;
        let rep = s(gs.run_wave(&plan.commands, &fns, &roots))?;
        if rep.recomputed != plan.recomputed {
            return Err(format!("round {round}: recomputed pages differ"));
        }
        if replay {
            s(twin.apply_batch(&deltas))?;
            let rep2 = s(twin.run_wave(&plan.commands, &fns, &roots))?;
            if rep2.recomputed != rep.recomputed || rep2.changed != rep.changed {
                return Err(format!(
                    "round {round}: replayed and stream waves ran differently"
                ));
            }
            for &p in &pages {
                if s(gs.read(p))? != s(twin.read(p))? {
                    return Err(format!(
                        "round {round}: page {p} differs between replay and stream"
                    ));
                }
            }
        }
        for &p in &pages {
            if s(gs.read(p))? != s(engine.store().read(p))? {
                return Err(format!("round {round}: page {p} differs from the CPU wave"));
            }
        }
        on_device += rep.on_device;
        recomputed += rep.recomputed.len();
    }
    if !fail && on_device == 0 {
        return Err("no command ran on the device".into());
    }
    let st = gs.stats();
    if replay && (st.graph_replays == 0 || st.kernel_failures != 0) {
        return Err(format!("no level was replayed: {st:?}"));
    }
    Ok(format!(
        "{n} pages, 20 waves: {recomputed} commands ({on_device} on the device), every page equals the CPU engine{}; kernel failures {}, graph captures {}, replays {}",
        if replay { " and the stream-path twin" } else { "" },
        st.kernel_failures, st.graph_captures, st.graph_replays
    ))
}

fn check_persistent(dev: &Arc<CudaDevice>, n: u64) -> std::result::Result<String, String> {
    let mut pk = s(PersistentKernel::start(dev.clone(), 4096, n, 64))?;
    let t0 = Instant::now();
    for i in 0..n {
        s(pk.submit(RingOp::Log(i)))?;
    }
    let submitted = pk.submitted();
    s(pk.wait_for(submitted))?;
    let secs = t0.elapsed().as_secs_f64();
    let stats = s(pk.stop())?;
    let log = s(pk.read_log())?;
    if let Some(i) = log.iter().enumerate().position(|(i, &v)| v != i as u64) {
        return Err(format!(
            "log entry {i} is {} (lost or out of order)",
            log[i]
        ));
    }
    if stats.out_of_order != 0 || !stats.clean_shutdown || stats.commands != n {
        return Err(format!("bad stats {stats:?}"));
    }
    // Writes and adds against a host model.
    let mut pk = s(PersistentKernel::start(dev.clone(), 64, 1, 64))?;
    let mut model = vec![0u64; 64];
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..10_000 {
        let a = rng.gen_range(0..64u64);
        let b: u64 = rng.gen_range(0..1000);
        if rng.gen_bool(0.5) {
            s(pk.submit(RingOp::Write(a, b)))?;
            model[a as usize] = b;
        } else {
            s(pk.submit(RingOp::Add(a, b)))?;
            model[a as usize] = model[a as usize].wrapping_add(b);
        }
    }
    s(pk.stop())?;
    if s(pk.read_page())? != model {
        return Err("word page differs from the host model".into());
    }
    Ok(format!("{n} commands in order, none lost, {:.1} M commands/s pipelined; stats {stats:?}; 10k writes/adds equal the model", n as f64 / secs / 1e6))
}

fn check_graph_replay(
    dev: &Arc<CudaDevice>,
    rng: &mut StdRng,
) -> std::result::Result<String, String> {
    let npages = 32;
    let size = 65536usize;
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut sc = Scratch::new(dev);
    for _ in 0..npages {
        let poison: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
        a.push(s(sc.upload(&poison))?);
        b.push(s(sc.upload(&poison))?);
    }
    s(dev.sync())?;
    let shape: Vec<(u64, u64, Vec<u64>)> = (0..npages)
        .map(|_| {
            let len = rng.gen_range(1..size as u64 / 2);
            let off = rng.gen_range(0..size as u64 - len);
            let mask = (0..len.div_ceil(64))
                .map(|_| rng.gen())
                .collect::<Vec<u64>>();
            (off, len, mask)
        })
        .map(|(off, len, mut m)| {
            if len % 64 != 0 {
                if let Some(l) = m.last_mut() {
                    *l &= (1u64 << (len % 64)) - 1;
                }
            }
            (off, len, m)
        })
        .collect();
    let make = |rng: &mut StdRng| -> Vec<Delta> {
        shape
            .iter()
            .enumerate()
            .map(|(i, (off, len, m))| {
                Delta::masked(
                    PageId(i as u64 + 1),
                    *off,
                    (0..*len).map(|_| rng.gen()).collect(),
                    m.clone(),
                )
            })
            .collect()
    };
    let first = make(rng);
    let items = |base: &[u64], ds: &[Delta]| -> Vec<(u64, Delta)> {
        ds.iter()
            .enumerate()
            .map(|(i, d)| (base[i] + d.offset, d.clone()))
            .collect()
    };
    let ia = items(&a, &first);
    let ib = items(&b, &first);
    let ra: Vec<(u64, &Delta)> = ia.iter().map(|(p, d)| (*p, d)).collect();
    let rb: Vec<(u64, &Delta)> = ib.iter().map(|(p, d)| (*p, d)).collect();
    let mut stream_batch = s(SteadyBatch::new(dev.clone(), &ra))?;
    let mut graph_batch = s(SteadyBatch::new(dev.clone(), &rb))?;
    graph_batch.set_replay(true);
    for it in 0..20 {
        if it > 0 {
            let next = make(rng);
            let ia = items(&a, &next);
            let ib = items(&b, &next);
            s(stream_batch.update(&ia.iter().map(|(p, d)| (*p, d)).collect::<Vec<_>>()))?;
            s(graph_batch.update(&ib.iter().map(|(p, d)| (*p, d)).collect::<Vec<_>>()))?;
        }
        s(stream_batch.run())?;
        s(graph_batch.run())?;
    }
    for i in 0..npages {
        let mut x = vec![0u8; size];
        let mut y = vec![0u8; size];
        s(dev.download(a[i], &mut x))?;
        s(dev.download(b[i], &mut y))?;
        if x != y {
            return Err(format!(
                "page {i} differs between stream execution and graph replay"
            ));
        }
    }
    let st = graph_batch.stats();
    if st.captures != 1 || st.replays != 20 {
        return Err(format!("expected 1 capture and 20 replays, got {st:?}"));
    }
    Ok(format!(
        "20 waves of {npages} masked deltas: replay equals stream execution; {st:?}"
    ))
}

fn check_pool(dev: &Arc<CudaDevice>) -> std::result::Result<String, String> {
    let before = dev.pool().stats();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let dev = dev.clone();
            std::thread::spawn(move || -> std::result::Result<u64, String> {
                let stream = dev.context().new_stream().map_err(|e| e.to_string())?;
                let mut rng = StdRng::seed_from_u64(t);
                let mut live: Vec<(u64, usize)> = Vec::new();
                let mut n = 0;
                for _ in 0..20_000 {
                    if live.is_empty() || rng.gen_bool(0.55) {
                        let size = [4096usize, 65536, 1 << 20][rng.gen_range(0..3)];
                        let p = s(dev.pool().alloc(size, &stream))?;
                        live.push((p, size));
                        n += 1;
                    } else {
                        let (p, size) = live.swap_remove(rng.gen_range(0..live.len()));
                        s(dev.pool().free(p, size, &stream))?;
                    }
                }
                for (p, size) in live {
                    s(dev.pool().free(p, size, &stream))?;
                }
                s(dev.pool().trim(&stream))?;
                stream.synchronize().map_err(|e| e.to_string())?;
                Ok(n)
            })
        })
        .collect();
    let mut allocs = 0;
    for h in handles {
        allocs += h.join().map_err(|_| "pool thread panicked".to_string())??;
    }
    let after = dev.pool().stats();
    if after.live_bytes != before.live_bytes || after.live_count != before.live_count {
        return Err(format!("leak: before {before:?} after {after:?}"));
    }
    Ok(format!("8 streams, {allocs} allocations: live bytes/count back to {}/{}; peak {} B; reuse rate {:.3}; cached after trim {} B",
        after.live_bytes, after.live_count, after.peak_bytes, after.reuse_rate(), after.cached_bytes))
}

fn time<F: FnMut() -> Result<()>>(reps: usize, mut f: F) -> Result<f64> {
    f()?;
    let t0 = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    Ok(t0.elapsed().as_secs_f64() / reps as f64)
}

fn blocks_needed(len: u64) -> u32 {
    len.div_ceil(16).div_ceil(256).max(1) as u32
}

/// The median of `trials` measurements of [`time`] (latencies are noisy).
fn median_time<F: FnMut() -> Result<()>>(trials: usize, reps: usize, mut f: F) -> Result<f64> {
    let mut v = Vec::with_capacity(trials);
    for _ in 0..trials {
        v.push(time(reps, &mut f)?);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v[v.len() / 2])
}

fn bench_delta(dev: &Arc<CudaDevice>, dir: &Path, gpu: &str) -> Result<()> {
    let n: usize = 256 << 20;
    let mut rng = StdRng::seed_from_u64(1);
    let mut sc = Scratch::new(dev);
    let dst = sc.alloc(n)?;
    let src = sc.alloc(n)?;
    dev.memset(dst, 1, n)?;
    dev.memset(src, 2, n)?;
    let words = n / 64;
    let full: Vec<u64> = vec![u64::MAX; words];
    let random: Vec<u64> = (0..words).map(|_| rng.gen()).collect();
    let sparse: Vec<u64> = (0..words)
        .map(|_| if rng.gen_bool(0.01) { rng.gen() } else { 0 })
        .collect();
    let mfull = sc.upload(semiring_gpu::u64_bytes(&full))?;
    let mrand = sc.upload(semiring_gpu::u64_bytes(&random))?;
    let msparse = sc.upload(semiring_gpu::u64_bytes(&sparse))?;
    let mut prefix = Vec::with_capacity(words);
    let mut run = 0u32;
    for w in &sparse {
        prefix.push(run);
        run += w.count_ones();
    }
    let pre = sc.upload(semiring_gpu::u32_bytes(&prefix))?;
    dev.sync()?;
    let reps = 30;
    // Warm the clocks, then measure each case alternating with the copy
    // (5 rounds of `reps`), and report medians: drift hits both sides.
    time(3 * reps, || {
        dev.copy_dtod_on(dev.stream(), dst, src, n)?;
        dev.sync()
    })?;
    let mut results = Vec::new();
    for (name, mask, prefix, target) in [
        ("apply_nomask", 0u64, 0u64, json!(0.8)),
        ("apply_full_mask", mfull, 0, json!(0.8)),
        // A random mask must also read the destination: 3.125 bytes moved per
        // range byte against the copy's 2, so ~0.64 is the ceiling (the CPU
        // bar for this case is 0.6).
        ("apply_random_mask", mrand, 0, json!(0.6)),
        // 1% of mask words set: the bar is the design brief's sparse one.
        ("apply_sparse1_dense_payload", msparse, 0, json!(5.0)),
        ("apply_sparse1_sparse_payload", msparse, pre, json!(5.0)),
    ] {
        let mut copies = Vec::new();
        let mut applies = Vec::new();
        let blocks = delta_gpu::one_grid(dev, n as u64);
        for _ in 0..5 {
            copies.push(time(reps, || {
                dev.copy_dtod_on(dev.stream(), dst, src, n)?;
                dev.sync()
            })?);
            applies.push(time(reps, || {
                delta_gpu::launch_one(dev, dst, src, mask, prefix, n as u64, blocks)?;
                dev.sync()
            })?);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let (copy, t) = (median(&mut copies), median(&mut applies));
        let (gbs, copy_gbs) = (n as f64 / t / 1e9, n as f64 / copy / 1e9);
        results.push(result(
            &format!("{name}_256MiB"),
            gbs,
            "GB/s (range bytes)",
            "device-to-device copy of the range",
            copy_gbs,
            gbs / copy_gbs,
            target,
        ));
    }
    let copy = time(reps, || {
        dev.copy_dtod_on(dev.stream(), dst, src, n)?;
        dev.sync()
    })?;
    // Grid-size sweep (printed only): blocks capped at SMs x k.
    for (name, mask, prefix) in [
        ("full", mfull, 0u64),
        ("random", mrand, 0),
        ("sparse1_dense", msparse, 0),
        ("sparse1_sparse", msparse, pre),
    ] {
        for kernel in [
            "mmsb_apply_one",
            "mmsb_apply_one_lanes16",
            "mmsb_apply_one_runs",
        ] {
            for k in [4u32, 8, 16, 32, 64] {
                let cap = (dev.sm_count() * k).min(blocks_needed(n as u64));
                let t = time(reps, || {
                    delta_gpu::launch_one_named(
                        dev,
                        kernel,
                        [dst, src, mask, prefix, n as u64],
                        cap,
                    )?;
                    dev.sync()
                })?;
                println!(
                    "sweep {kernel} {name} blocks<=SMs*{k}: ratio {:.3}",
                    copy / t
                );
            }
        }
    }
    // A batched apply of 1024 masked deltas of 64 KiB each (one launch).
    let count = 1024usize;
    let len = 65536usize;
    let ds: Vec<Delta> = (0..count)
        .map(|i| {
            Delta::masked(
                PageId(i as u64 + 1),
                0,
                vec![7u8; len],
                vec![u64::MAX; len / 64],
            )
        })
        .collect();
    let items: Vec<(u64, &Delta)> = ds
        .iter()
        .enumerate()
        .map(|(i, d)| (dst + (i * len) as u64, d))
        .collect();
    let staged_len = delta_gpu::batch_bytes(&ds.iter().collect::<Vec<_>>());
    let staging = sc.alloc(staged_len)?;
    let staged = delta_gpu::encode_batch(&items, staging)?;
    dev.upload(staging, &staged)?;
    let t = time(reps, || {
        delta_gpu::launch_batch(dev, dev.stream(), staging, count, len as u64)?;
        dev.sync()
    })?;
    let bytes = (count * len) as f64;
    let copy_b = time(reps, || {
        dev.copy_dtod_on(dev.stream(), dst, src, count * len)?;
        dev.sync()
    })?;
    // Blocks-per-command sweep of the batched apply (printed only).
    let fb = dev.function(KernelSource::DeltaApply, "mmsb_apply_batch")?;
    for x in [1u32, 2, 4, 16] {
        let tx = time(reps, || {
            dev.launch(
                &fb,
                (x, count as u32, 1),
                256,
                &[
                    mmsb_gpu::cuda_device::Arg::U64(staging),
                    mmsb_gpu::cuda_device::Arg::U32(count as u32),
                ],
            )?;
            dev.sync()
        })?;
        println!(
            "sweep mmsb_apply_batch 1024x64KiB blocks/command={x}: ratio {:.3}",
            copy_b / tx
        );
    }
    results.push(result(
        "apply_batch_1024x64KiB_full_mask",
        bytes / t / 1e9,
        "GB/s (range bytes)",
        "device-to-device copy of the same bytes",
        bytes / copy_b / 1e9,
        copy_b / t,
        json!(0.8),
    ));
    write_group(dir, "gpu-delta", gpu, results);
    Ok(())
}

fn bench_pool(dev: &Arc<CudaDevice>, dir: &Path, gpu: &str) -> Result<()> {
    let size = 65536;
    let stream = dev.stream().clone();
    let pool = dev.pool().clone();
    let slab = time(100_000, || {
        let p = pool.alloc(size, &stream)?;
        pool.free(p, size, &stream)
    })?;
    dev.bind()?;
    let raw = time(2_000, || {
        // SAFETY: allocate then free the same fresh allocation, nothing else uses it.
        let p = unsafe { cudarc::driver::result::malloc_sync(size) }
            .map_err(|e| mmsb_gpu::gpu_error::driver("cuMemAlloc", e))?;
        // SAFETY: `p` came from cuMemAlloc just above and is freed once.
        unsafe { cudarc::driver::result::free_sync(p) }
            .map_err(|e| mmsb_gpu::gpu_error::driver("cuMemFree", e))
    })?;
    let asyncp = time(100_000, || {
        // SAFETY: allocate then free on the same stream, nothing else uses it.
        let p = unsafe { cudarc::driver::result::malloc_async(stream.cu_stream(), size) }
            .map_err(|e| mmsb_gpu::gpu_error::driver("cuMemAllocAsync", e))?;
        // SAFETY: `p` came from cuMemAllocAsync on this stream and is freed once.
        unsafe { cudarc::driver::result::free_async(p, stream.cu_stream()) }
            .map_err(|e| mmsb_gpu::gpu_error::driver("cuMemFreeAsync", e))
    })?;
    dev.sync()?;
    let results = vec![
        result(
            "pool_alloc_free_64KiB",
            slab * 1e9,
            "ns per alloc+free",
            "cuMemAlloc+cuMemFree",
            raw * 1e9,
            raw / slab,
            json!(40.0),
        ),
        result(
            "stream_ordered_alloc_free_64KiB",
            asyncp * 1e9,
            "ns per alloc+free (cuMemAllocAsync, no slab)",
            "cuMemAlloc+cuMemFree",
            raw * 1e9,
            raw / asyncp,
            Value::Null,
        ),
    ];
    write_group(dir, "gpu-pool", gpu, results);
    Ok(())
}

fn bench_latency(dev: &Arc<CudaDevice>, dir: &Path, gpu: &str) -> Result<()> {
    let mut sc = Scratch::new(dev);
    let counter = sc.alloc(8)?;
    dev.memset(counter, 0, 8)?;
    let f = dev.function(KernelSource::DeltaApply, "mmsb_touch")?;
    let n = 20_000;
    let launch = median_time(5, n / 5, || {
        dev.launch(&f, (1, 1, 1), 32, &[Arg::U64(counter)])?;
        dev.sync()
    })?;
    // Graph replay of the same one-kernel command.
    let stream = dev
        .context()
        .new_stream()
        .map_err(|e| mmsb_gpu::gpu_error::driver("stream", e))?;
    stream
        .begin_capture(cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
        .map_err(|e| mmsb_gpu::gpu_error::driver("capture", e))?;
    let issued = dev.launch_on(&stream, &f, (1, 1, 1), 32, &[Arg::U64(counter)]);
    let g = stream
        .end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0))
        .map_err(|e| mmsb_gpu::gpu_error::driver("end capture", e))?;
    issued?;
    let g = g.ok_or_else(|| mmsb_gpu::gpu_error::gpu("no graph"))?;
    let graph = median_time(5, n / 5, || {
        g.launch()
            .map_err(|e| mmsb_gpu::gpu_error::driver("graph launch", e))?;
        stream
            .synchronize()
            .map_err(|e| mmsb_gpu::gpu_error::driver("sync", e))
    })?;
    let mut shapes = Vec::new();
    for (warps, slots, fence) in [
        (1u32, 8u32, FenceScope::System),
        (2, 8, FenceScope::System),
        (2, 1, FenceScope::System),
        (1, 8, FenceScope::Gpu),
        (2, 8, FenceScope::Gpu),
        (2, 1, FenceScope::Gpu),
        (1, 8, FenceScope::Block),
        (2, 8, FenceScope::Block),
        (2, 1, FenceScope::Block),
        (1, 8, FenceScope::Deferred),
        (2, 8, FenceScope::Deferred),
    ] {
        let mut pk = PersistentKernel::start_with(
            dev.clone(),
            1024,
            1,
            64,
            PollShape {
                warps,
                slots,
                fence,
            },
        )?;
        let mut i = 0u64;
        let t = time(100_000, || {
            i += 1;
            pk.round_trip(RingOp::Write(0, i))
        })?;
        let t0 = Instant::now();
        for k in 0..200_000u64 {
            pk.submit(RingOp::Add(1, k))?;
        }
        let sub = pk.submitted();
        pk.wait_for(sub)?;
        let pipe = t0.elapsed().as_secs_f64() / 200_000.0;
        let st = pk.stop()?;
        println!("persistent warps={warps} slots={slots} fence={fence:?}: round trip {:.3} us, pipelined {:.0} ns (mean empty poll {:.0} ns)", t * 1e6, pipe * 1e9, st.mean_poll_ns);
        shapes.push((t, warps, slots));
    }
    let mut pk = PersistentKernel::start(dev.clone(), 1024, 1, 64)?;
    let mut i = 0u64;
    let persistent = median_time(5, 40_000, || {
        i += 1;
        pk.round_trip(RingOp::Write(0, i))
    })?;
    // The distribution of single round trips (default shape): 100k timed
    // one by one until `done`, then 100k until `visible`.
    let mut rt = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        i += 1;
        let t0 = Instant::now();
        pk.round_trip(RingOp::Write(0, i))?;
        rt.push(t0.elapsed().as_secs_f64());
    }
    let mut rv = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        i += 1;
        let t0 = Instant::now();
        let k = pk.submit(RingOp::Write(0, i))?;
        pk.wait_visible(k + 1)?;
        rv.push(t0.elapsed().as_secs_f64());
    }
    let pct = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q) as usize]
    };
    let (rt50, rt99) = (pct(&mut rt, 0.5), pct(&mut rt, 0.99));
    let (rv50, rv99) = (pct(&mut rv, 0.5), pct(&mut rv, 0.99));
    println!(
        "persistent round trip (default shape, 100k single samples): done p50 {:.3} us p99 {:.3} us; visible p50 {:.3} us p99 {:.3} us",
        rt50 * 1e6,
        rt99 * 1e6,
        rv50 * 1e6,
        rv99 * 1e6
    );
    let n_pipe = 1_000_000u64;
    let t0 = Instant::now();
    for k in 0..n_pipe {
        pk.submit(RingOp::Add(1, k))?;
    }
    let sub = pk.submitted();
    pk.wait_for(sub)?;
    let pipe = t0.elapsed().as_secs_f64() / n_pipe as f64;
    let stats = pk.stop()?;
    println!("ring stats: {stats:?}");
    // A steady wave of 64 masked 4 KiB deltas: stream execution vs graph replay.
    let wave_pages: Vec<u64> = (0..64).map(|_| sc.alloc(4096)).collect::<Result<_>>()?;
    let ds: Vec<Delta> = (0..64)
        .map(|i| {
            Delta::masked(
                PageId(i + 1),
                0,
                vec![i as u8; 4096],
                vec![0x5555_5555_5555_5555; 64],
            )
        })
        .collect();
    let items: Vec<(u64, &Delta)> = ds.iter().zip(&wave_pages).map(|(d, &p)| (p, d)).collect();
    let mut wave = SteadyBatch::new(dev.clone(), &items)?;
    let stream_wave = time(5_000, || wave.run())?;
    wave.set_replay(true);
    let graph_wave = time(5_000, || wave.run())?;
    let results = vec![
        result(
            "steady_wave_64_deltas_graph_replay",
            graph_wave * 1e6,
            "us per wave (stage + apply + sync)",
            "the same wave issued on the stream",
            stream_wave * 1e6,
            stream_wave / graph_wave,
            Value::Null,
        ),
        result(
            "persistent_kernel_round_trip",
            persistent * 1e6,
            "us per command",
            "kernel launch + stream sync",
            launch * 1e6,
            launch / persistent,
            json!("<= 3 us"),
        ),
        result(
            "persistent_kernel_round_trip_p50",
            rt50 * 1e6,
            "us per command (100k single round trips)",
            "kernel launch + stream sync",
            launch * 1e6,
            launch / rt50,
            json!("<= 3 us"),
        ),
        result(
            "persistent_kernel_round_trip_p99",
            rt99 * 1e6,
            "us per command (100k single round trips)",
            "kernel launch + stream sync",
            launch * 1e6,
            launch / rt99,
            Value::Null,
        ),
        result(
            "persistent_kernel_round_trip_to_gpu_visible_p50",
            rv50 * 1e6,
            "us per command until `visible` (effects fenced GPU-wide)",
            "kernel launch + stream sync",
            launch * 1e6,
            launch / rv50,
            Value::Null,
        ),
        result(
            "persistent_kernel_round_trip_to_gpu_visible_p99",
            rv99 * 1e6,
            "us per command until `visible`",
            "kernel launch + stream sync",
            launch * 1e6,
            launch / rv99,
            Value::Null,
        ),
        result(
            "graph_replay_round_trip",
            graph * 1e6,
            "us per command",
            "kernel launch + stream sync",
            launch * 1e6,
            launch / graph,
            Value::Null,
        ),
        result(
            "launch_per_delta_round_trip",
            launch * 1e6,
            "us per command",
            "kernel launch + stream sync",
            launch * 1e6,
            1.0,
            Value::Null,
        ),
        result(
            "persistent_kernel_pipelined",
            pipe * 1e9,
            "ns per command (1M commands, ring of 1024)",
            "kernel launch + stream sync",
            launch * 1e9,
            launch / pipe,
            Value::Null,
        ),
    ];
    write_group(dir, "gpu-latency", gpu, results);
    Ok(())
}

fn bench_unified(dev: &Arc<CudaDevice>, dir: &Path, gpu: &str) -> Result<()> {
    let pages = 64usize;
    let page = 4usize << 20;
    let mut bufs: Vec<UnifiedBuf> = (0..pages)
        .map(|_| UnifiedBuf::new(dev.context(), page))
        .collect::<Result<_>>()?;
    let mut sc = Scratch::new(dev);
    let t = sc.alloc(page)?;
    dev.memset(t, 1, page)?;
    dev.sync()?;
    let f_name = "mmsb_accumulate_plus_times_u8";
    let f = dev.function(KernelSource::Semiring, f_name)?;
    let pstream = dev
        .context()
        .new_stream()
        .map_err(|e| mmsb_gpu::gpu_error::driver("stream", e))?;
    let wave = |bufs: &[UnifiedBuf], prefetch: usize| -> Result<f64> {
        let t0 = Instant::now();
        let mut events = Vec::new();
        for (i, b) in bufs.iter().enumerate() {
            if prefetch > 0 {
                let end = (i + prefetch).min(bufs.len());
                let start = if i == 0 {
                    0
                } else {
                    (i + prefetch - 1).min(bufs.len())
                };
                for (j, bj) in bufs.iter().enumerate().take(end).skip(start) {
                    bj.prefetch(0, page, true, &pstream)?;
                    let e = pstream
                        .record_event(None)
                        .map_err(|e| mmsb_gpu::gpu_error::driver("event", e))?;
                    events.push((j, e));
                }
                if let Some((_, e)) = events.iter().find(|(j, _)| *j == i) {
                    dev.stream()
                        .wait(e)
                        .map_err(|e| mmsb_gpu::gpu_error::driver("wait", e))?;
                }
            }
            dev.launch(
                &f,
                ((page as u64).div_ceil(256) as u32, 1, 1),
                256,
                &[
                    Arg::U64(b.ptr()),
                    Arg::U64(t),
                    Arg::U64(0),
                    Arg::U64(page as u64),
                ],
            )?;
        }
        dev.sync()?;
        pstream
            .synchronize()
            .map_err(|e| mmsb_gpu::gpu_error::driver("sync", e))?;
        Ok(t0.elapsed().as_secs_f64())
    };
    let touch_host = |bufs: &mut [UnifiedBuf]| {
        for b in bufs.iter_mut() {
            b.host_slice_mut().fill(3);
        }
    };
    // Tune the distance: time one page's prefetch and one resident page's compute.
    let mut tuner = PrefetchTuner::new(16);
    touch_host(&mut bufs);
    for b in bufs.iter().take(4) {
        let t0 = Instant::now();
        b.prefetch(0, page, true, &pstream)?;
        pstream
            .synchronize()
            .map_err(|e| mmsb_gpu::gpu_error::driver("sync", e))?;
        tuner.record_prefetch(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        dev.launch(
            &f,
            ((page as u64).div_ceil(256) as u32, 1, 1),
            256,
            &[
                Arg::U64(b.ptr()),
                Arg::U64(t),
                Arg::U64(0),
                Arg::U64(page as u64),
            ],
        )?;
        dev.sync()?;
        tuner.record_compute(t0.elapsed().as_secs_f64());
    }
    let d = tuner.distance();
    let mut no = f64::MAX;
    let mut yes = f64::MAX;
    for _ in 0..3 {
        touch_host(&mut bufs);
        no = no.min(wave(&bufs, 0)?);
        touch_host(&mut bufs);
        yes = yes.min(wave(&bufs, d)?);
    }
    touch_host(&mut bufs);
    for b in &bufs {
        b.prefetch(0, page, true, dev.stream())?;
    }
    dev.sync()?;
    let resident = wave(&bufs, 0)?;
    let bytes = (pages * page) as f64;
    let results = vec![
        result(
            &format!("unified_wave_prefetch_distance_{d}"),
            bytes / yes / 1e9,
            "GB/s (64 pages of 4 MiB, host-resident at start)",
            "the same wave without prefetch (demand faults)",
            bytes / no / 1e9,
            no / yes,
            Value::Null,
        ),
        result(
            "unified_wave_no_prefetch",
            bytes / no / 1e9,
            "GB/s (64 pages of 4 MiB, host-resident at start)",
            "the same wave with pages already on the device",
            bytes / resident / 1e9,
            resident / no,
            Value::Null,
        ),
    ];
    write_group(dir, "gpu-unified", gpu, results);
    Ok(())
}

fn bench_spmv(dev: &Arc<CudaDevice>, dir: &Path, gpu: &str) -> Result<()> {
    let nrows = 1usize << 20;
    let avg = 16;
    let mut rng = StdRng::seed_from_u64(3);
    let a: Csr<f64> = {
        let mut row_ptr = vec![0u32];
        let mut cols = Vec::with_capacity(nrows * avg);
        for _ in 0..nrows {
            let k = rng.gen_range(avg / 2..=avg + avg / 2);
            for _ in 0..k {
                cols.push(rng.gen_range(0..nrows) as u32);
            }
            row_ptr.push(cols.len() as u32);
        }
        let vals = (0..cols.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
        Csr {
            nrows,
            ncols: nrows,
            row_ptr,
            cols,
            vals,
        }
    };
    let x: Vec<f64> = (0..nrows).map(|_| rng.gen_range(-1.0..1.0)).collect();
    // Files for the cuSPARSE script.
    let mdir = std::env::var_os("MMSB_SPMV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("mmsb_spmv_matrix"));
    let _ = std::fs::create_dir_all(&mdir);
    let _ = std::fs::write(mdir.join("indptr.u32"), semiring_gpu::u32_bytes(&a.row_ptr));
    let _ = std::fs::write(mdir.join("indices.u32"), semiring_gpu::u32_bytes(&a.cols));
    let _ = std::fs::write(mdir.join("data.f64"), f64::slice_as_bytes(&a.vals));
    let _ = std::fs::write(mdir.join("x.f64"), f64::slice_as_bytes(&x));
    let mut sc = Scratch::new(dev);
    let ad = semiring_gpu::upload_csr(&mut sc, &a)?;
    let xd = sc.upload(f64::slice_as_bytes(&x))?;
    let yd = sc.alloc(nrows * 8)?;
    let vals32: Vec<f32> = a.vals.iter().map(|&v| v as f32).collect();
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let v32 = sc.upload(f32::slice_as_bytes(&vals32))?;
    let x32d = sc.upload(f32::slice_as_bytes(&x32))?;
    let y32 = sc.alloc(nrows * 4)?;
    dev.sync()?;
    let reps = 50;
    let mut results = Vec::new();
    let flops = 2.0 * a.nnz() as f64;
    for (name, sr) in [
        ("spmv_plus_times_f64", Semiring::PlusTimes),
        ("spmv_min_plus_f64", Semiring::MinPlus),
    ] {
        let t = time(reps, || {
            semiring_gpu::spmv_device(dev, sr, mmsb_gpu::ElemType::F64, &ad, xd, yd)?;
            dev.sync()
        })?;
        results.push(result(
            name,
            t * 1e3,
            "ms per SpMV (1M rows, 16.8M nnz)",
            "cuSPARSE plus-times f64 (see gpu-spmv-cusparse)",
            f64::NAN,
            f64::NAN,
            json!(">= 1x cuSPARSE"),
        ));
        let _ = flops;
    }
    let a32 = semiring_gpu::DeviceCsr { vals: v32, ..ad };
    let t = time(reps, || {
        semiring_gpu::spmv_device(
            dev,
            Semiring::PlusTimes,
            mmsb_gpu::ElemType::F32,
            &a32,
            x32d,
            y32,
        )?;
        dev.sync()
    })?;
    for lanes in [2u32, 4, 8, 16, 32] {
        let t = time(reps, || {
            semiring_gpu::spmv_device_lanes(
                dev,
                Semiring::PlusTimes,
                mmsb_gpu::ElemType::F64,
                &ad,
                xd,
                yd,
                lanes,
            )?;
            dev.sync()
        })?;
        println!("spmv plus_times f64 lanes={lanes}: {:.4} ms", t * 1e3);
    }
    results.push(result(
        "spmv_plus_times_f32",
        t * 1e3,
        "ms per SpMV (1M rows, 16.8M nnz)",
        "cuSPARSE plus-times f32",
        f64::NAN,
        f64::NAN,
        json!(">= 1x cuSPARSE"),
    ));
    // Correctness of this very matrix against the CPU (plus-times, tolerance).
    let mut want = vec![0.0f64; nrows];
    semiring_core::spmv(Semiring::PlusTimes, &a, &x, &mut want)?;
    semiring_gpu::spmv_device(
        dev,
        Semiring::PlusTimes,
        mmsb_gpu::ElemType::F64,
        &ad,
        xd,
        yd,
    )?;
    let mut b = vec![0u8; nrows * 8];
    dev.download(yd, &mut b)?;
    let got = semiring_gpu::from_bytes::<f64>(&b);
    let maxerr = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    println!("spmv 1M-row matrix: max abs error vs CPU {maxerr:e}");
    std::fs::write(mdir.join("y_mmsb.f64"), &b).ok();
    write_group(dir, "gpu-spmv", gpu, results);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let _ = std::fs::create_dir_all(&dir);
    let p = mmsb_gpu::probe();
    println!("probe: {p:?}");
    let mut rep = Report {
        checks: Vec::new(),
        failed: 0,
    };
    let dev = match CudaDevice::open(0) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            println!("no GPU: {e}");
            // The CPU-only contract: every entry point falls back.
            let mut st = GpuStore::open();
            let r = st.create_page(PageId(1), 64, PageLocation::Gpu);
            println!("cpu-only store: {:?} {:?}", r, st.stats());
            std::process::exit(2);
        }
    };
    let gpu = dev.name().to_string();
    println!(
        "device: {gpu} sm_{}{} ({} SMs)",
        dev.compute_capability().0,
        dev.compute_capability().1,
        dev.sm_count()
    );
    let t0 = Instant::now();
    rep.check(
        "nvrtc_compiles_every_kernel",
        s(dev.warm_up()).map(|_| format!("{:.2} s compiling", dev.compile_seconds())),
    );
    println!("warm-up took {:.2}s", t0.elapsed().as_secs_f64());
    rep.check("nvrtc_compiles_once_per_process", {
        let before = mmsb_gpu::kernel_cache::compile_count();
        match CudaDevice::open(0).and_then(|d| d.warm_up().map(|_| d)) {
            Ok(d)
                if mmsb_gpu::kernel_cache::compile_count() == before
                    && d.compile_seconds() == 0.0 =>
            {
                Ok(format!(
                    "{before} compilations, a second device reused them"
                ))
            }
            Ok(_) => Err("a second device recompiled".into()),
            Err(e) => Err(e.to_string()),
        }
    });
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let batches = if quick { 20 } else { 200 };
    rep.check(
        "delta_apply_equals_cpu",
        check_delta_apply(&dev, &mut rng, batches, None, false),
    );
    rep.check(
        "forced_kernel_failure_mid_batch_equals_cpu",
        check_delta_apply(
            &dev,
            &mut rng,
            batches / 4,
            Some(FailurePoint::Kernel),
            false,
        ),
    );
    rep.check(
        "forced_kernel_failure_with_host_copy_equals_cpu",
        check_delta_apply(
            &dev,
            &mut rng,
            batches / 4,
            Some(FailurePoint::Kernel),
            true,
        ),
    );
    let big = if quick { 100_003 } else { 1_000_003 };
    rep.check(
        "semiring_f32_equals_cpu",
        check_semiring_type::<f32>(&dev, &mut rng, big),
    );
    rep.check(
        "semiring_f64_equals_cpu",
        check_semiring_type::<f64>(&dev, &mut rng, big),
    );
    rep.check(
        "semiring_i32_equals_cpu",
        check_semiring_type::<i32>(&dev, &mut rng, big),
    );
    rep.check(
        "semiring_i64_equals_cpu",
        check_semiring_type::<i64>(&dev, &mut rng, big),
    );
    rep.check(
        "semiring_u8_equals_cpu",
        check_semiring_type::<u8>(&dev, &mut rng, big),
    );
    rep.check("store_semiring_ops_fall_back_on_forced_failure", {
        let mut st = GpuStore::with_device(dev.clone());
        st.set_forced_failure(Some(FailurePoint::Kernel));
        let x: Vec<i64> = (0..1000).map(|_| rng.gen_range(-100..100)).collect();
        match st.fold_add(Semiring::PlusTimes, &x) {
            Ok(v) if v == x.iter().sum::<i64>() && st.stats().ops_finished_on_cpu == 1 => {
                Ok(format!("{:?}", st.stats()))
            }
            other => Err(format!("{other:?} {:?}", st.stats())),
        }
    });
    rep.check(
        "numeric_deltas_on_device_equal_apply_reference",
        check_numeric_deltas(&dev, &mut rng, batches / 2),
    );
    rep.check(
        "gpu_sync_edge_refreshes_the_device_copy",
        check_gpu_sync(&dev),
    );
    rep.check(
        "gpu_mirror_refreshes_after_each_commit",
        check_gpu_mirror(&dev, &mut rng),
    );
    rep.check(
        "device_wave_equals_cpu_engine_wave",
        check_device_wave(&dev, &mut rng, false, false),
    );
    rep.check(
        "device_wave_forced_failure_equals_cpu_engine_wave",
        check_device_wave(&dev, &mut rng, true, false),
    );
    rep.check(
        "commit_wave_follows_the_durable_store_on_the_device",
        check_commit_wave(&dev, &mut rng),
    );
    rep.check(
        "device_wave_graph_replay_equals_stream_wave",
        check_device_wave(&dev, &mut rng, false, true),
    );
    rep.check(
        "apply_one_masked_runs_equal_cpu",
        check_apply_one(&dev, &mut rng),
    );
    rep.check(
        "semiring_network_wave_equals_cpu_network",
        check_semiring_network_wave(&dev, &mut rng),
    );
    rep.check(
        "store_graph_replay_equals_stream_path",
        check_store_graph_replay(&dev, &mut rng),
    );
    rep.check(
        "persistent_kernel_1m_commands_in_order",
        check_persistent(&dev, if quick { 100_000 } else { 1_000_000 }),
    );
    rep.check(
        "graph_replay_equals_stream_execution",
        check_graph_replay(&dev, &mut rng),
    );
    rep.check("pool_8_streams_stats_return_to_zero", check_pool(&dev));
    let checks = json!({"group": "gpu-check", "date": today(), "machine": machine(&gpu),
                        "passed": rep.checks.len() - rep.failed, "failed": rep.failed, "checks": rep.checks});
    let _ = std::fs::write(
        dir.join("gpu-check.json"),
        serde_json::to_string_pretty(&checks).unwrap_or_default() + "\n",
    );
    println!(
        "{} passed, {} failed",
        rep.checks.len() - rep.failed,
        rep.failed
    );
    if !args.iter().any(|a| a == "--no-bench") {
        for (name, r) in [
            ("delta", bench_delta(&dev, &dir, &gpu)),
            ("pool", bench_pool(&dev, &dir, &gpu)),
            ("latency", bench_latency(&dev, &dir, &gpu)),
            ("unified", bench_unified(&dev, &dir, &gpu)),
            ("spmv", bench_spmv(&dev, &dir, &gpu)),
        ] {
            if let Err(e) = r {
                println!("bench {name} failed: {e}");
            }
        }
    }
    std::process::exit(if rep.failed == 0 { 0 } else { 1 });
}

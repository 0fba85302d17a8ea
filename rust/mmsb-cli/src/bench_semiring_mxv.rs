//! `mmsb bench semiring`, the mxv part: one wave of semiring matrix-vector
//! propagation against SuiteSparse:GraphBLAS, and an incremental update
//! against a full wave.
//!
//! **mxv.** A random n x n CSR matrix with `k` distinct random columns per row
//! (default n = 100,000, k = 10: 1M stored entries) and a dense vector x, over
//! plus-times and min-plus on f64, at 1 and 2 threads. Our side times
//! `semiring_matrix::mxv_into` (`y = A ⊗ x`: the kernel a wave's `Accumulate`
//! command runs) and a full wave of the two-node network `x -> y` (the wave:
//! reset, accumulate, changed-entry report, for both nodes). The yardstick is
//! `GrB_mxv(w, A, x)` of SuiteSparse:GraphBLAS on the same matrix and vector
//! with the same thread count, called through the `suitesparse-graphblas`
//! wheel's cffi binding by `bench_semiring_graphblas.py` (the matrix goes
//! over in binary files; the script reports the best of its repetitions, the
//! Rust side likewise, so each side is timed by its own clock on the same
//! machine in the same run). `ratio = GraphBLAS time / our time` (>= 1: we
//! are at least as fast); target 1.0. The results are checked against each
//! other (exact for min-plus, relative 1e-9 for plus-times).
//!
//! The Python side needs a venv with the wheel: `MMSB_GRAPHBLAS_PYTHON` names
//! a python that has it; else `benchmark/.venv-graphblas` is used, and created
//! (`pip install suitesparse-graphblas numpy`) when missing —
//! except under `--quick`, which skips the GraphBLAS cases (and says so) when
//! no such python exists, so CI never installs anything.
//!
//! **Incremental vs full.** The same network; one input entry of x changes per
//! update (plus-times: a new value, pushed as `W ⊗ Δx` along one column of A;
//! min-plus: alternately lowered, an improvement pushed as candidates, and
//! raised back, which recomputes the reached rows of y from all parents). The
//! yardstick is a full wave of the same network, timed in the same loop;
//! `ratio = full wave time / incremental time` (the speed-up), target 100.
//! The plus-times update is also timed as a commit of an in-memory `Store`
//! whose pages are the network's semiring nodes (`store_commit`: commit path,
//! semiring hook, incremental wave, node-page deltas applied), against the
//! same full wave.

use mmsb_core::semiring::{MinPlus, PlusTimes, Semiring};
use mmsb_core::semiring_matrix::{mxv_into, Csr, Weight};
use mmsb_core::{Change, PageId, SemiringNetwork};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const SCRIPT: &str = include_str!("bench_semiring_graphblas.py");
const THREADS: [usize; 2] = [1, 2];

/// The thread pool for `t` threads.
fn pool(t: usize) -> Result<rayon::ThreadPool, String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(t)
        .build()
        .map_err(|e| e.to_string())
}

/// A random `n x n` matrix with `k` distinct sorted columns per row.
fn random_csr(n: usize, k: usize, rng: &mut StdRng) -> Result<Csr<f64>, String> {
    let mut indptr = Vec::with_capacity(n + 1);
    let mut indices: Vec<u32> = Vec::with_capacity(n * k);
    let mut values = Vec::with_capacity(n * k);
    indptr.push(0);
    let mut row: Vec<u32> = Vec::with_capacity(k);
    for _ in 0..n {
        row.clear();
        while row.len() < k.min(n) {
            let c = rng.gen_range(0..n as u32);
            if !row.contains(&c) {
                row.push(c);
            }
        }
        row.sort_unstable();
        for &c in &row {
            indices.push(c);
            values.push(rng.gen_range(0.0..1.0));
        }
        indptr.push(indices.len());
    }
    Csr::from_parts(n, n, indptr, indices, values).map_err(|e| e.to_string())
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A python with the GraphBLAS wheel, installing it when allowed.
fn graphblas_python(quick: bool, results_dir: &Path) -> Result<PathBuf, String> {
    let works = |py: &Path| {
        Command::new(py)
            .args(["-c", "import suitesparse_graphblas, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Some(p) = std::env::var_os("MMSB_GRAPHBLAS_PYTHON") {
        let p = PathBuf::from(p);
        return if works(&p) {
            Ok(p)
        } else {
            Err(format!(
                "MMSB_GRAPHBLAS_PYTHON={} cannot import graphblas",
                p.display()
            ))
        };
    }
    let base = results_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("benchmark"));
    let venv = base.join(".venv-graphblas");
    let py = venv.join("bin").join("python");
    if works(&py) {
        return Ok(py);
    }
    if quick {
        return Err(format!(
            "--quick: no python with the suitesparse-graphblas wheel ({} missing; \
             set MMSB_GRAPHBLAS_PYTHON or run without --quick to create it)",
            venv.display()
        ));
    }
    println!(
        "creating {} (pip install suitesparse-graphblas numpy)...",
        venv.display()
    );
    let run = |cmd: &mut Command| -> Result<(), String> {
        let o = cmd.output().map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{:?} failed: {}",
                cmd,
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "-q",
        "suitesparse-graphblas",
        "numpy",
    ]))?;
    if works(&py) {
        Ok(py)
    } else {
        Err("the new venv cannot import suitesparse_graphblas".into())
    }
}

fn write_le<T: Copy>(path: &Path, v: &[T], f: impl Fn(T) -> [u8; 8]) -> Result<(), String> {
    let mut b = Vec::with_capacity(v.len() * 8);
    for &x in v {
        b.extend_from_slice(&f(x));
    }
    std::fs::write(path, b).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn read_f64(path: &Path) -> Result<Vec<f64>, String> {
    let b = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(b.chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            f64::from_le_bytes(a)
        })
        .collect())
}

/// Runs GraphBLAS on `a`, `x`: (version, call, {(semiring, threads): best seconds}, dir).
struct GbRun {
    version: String,
    call: String,
    best: Vec<(String, usize, f64)>,
    dir: PathBuf,
}

fn run_graphblas(py: &Path, a: &Csr<f64>, x: &[f64], reps: usize) -> Result<GbRun, String> {
    let dir = std::env::temp_dir().join(format!("mmsb-bench-mxv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("meta.json"),
        json!({"nrows": a.nrows(), "ncols": a.ncols()}).to_string(),
    )
    .map_err(|e| e.to_string())?;
    write_le(&dir.join("indptr.bin"), a.indptr(), |v| {
        (v as u64).to_le_bytes()
    })?;
    write_le(&dir.join("indices.bin"), a.indices(), |v| {
        (v as u64).to_le_bytes()
    })?;
    write_le(&dir.join("values.bin"), a.values(), f64::to_le_bytes)?;
    write_le(&dir.join("x.bin"), x, f64::to_le_bytes)?;
    let script = dir.join("bench_semiring_graphblas.py");
    std::fs::write(&script, SCRIPT).map_err(|e| e.to_string())?;
    let threads: Vec<String> = THREADS.iter().map(|t| t.to_string()).collect();
    let o = Command::new(py)
        .arg(&script)
        .arg(&dir)
        .arg(reps.to_string())
        .arg(threads.join(","))
        .output()
        .map_err(|e| format!("running {}: {e}", py.display()))?;
    if !o.status.success() {
        return Err(format!(
            "the GraphBLAS script failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let doc: Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
    let mut best = Vec::new();
    let mut call = String::new();
    for r in doc["results"].as_array().into_iter().flatten() {
        let (Some(s), Some(t), Some(b)) = (
            r["semiring"].as_str(),
            r["threads"].as_u64(),
            r["best_s"].as_f64(),
        ) else {
            return Err(format!("unexpected GraphBLAS result {r}"));
        };
        best.push((s.to_string(), t as usize, b));
        call = r["call"].as_str().unwrap_or("").to_string();
    }
    Ok(GbRun {
        version: doc["version"].as_str().unwrap_or("?").to_string(),
        call,
        best,
        dir,
    })
}

/// Best-of-`reps` seconds of our kernel and our full wave for `S`, at `t` threads.
fn time_ours<S: Semiring<Elem = f64> + Default>(
    a: &Csr<f64>,
    x: &[f64],
    t: usize,
    reps: usize,
) -> Result<(f64, f64, Vec<f64>), String> {
    let s = S::default();
    let e = |e: mmsb_core::Error| e.to_string();
    let mut net = network::<S>(a, x)?;
    let p = pool(t)?;
    p.install(|| {
        let mut y = vec![s.zero(); a.nrows()];
        mxv_into(&s, a, x, &mut y, false).map_err(e)?;
        // Back to back, as the GraphBLAS script times its calls.
        let mut k = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t0 = Instant::now();
            mxv_into(&s, a, black_box(x), &mut y, false).map_err(e)?;
            k.push(t0.elapsed().as_secs_f64());
            black_box(&mut y);
        }
        let mut w = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t0 = Instant::now();
            black_box(net.run_full().map_err(e)?);
            w.push(t0.elapsed().as_secs_f64());
        }
        Ok((best(&k), best(&w), y))
    })
}

const X: PageId = PageId(1);
const Y: PageId = PageId(2);

/// The network `x -> y` with `A` on the edge and `x` as x's input.
fn network<S: Semiring<Elem = f64> + Default>(
    a: &Csr<f64>,
    x: &[f64],
) -> Result<SemiringNetwork<S>, String> {
    let e = |e: mmsb_core::Error| e.to_string();
    let mut net = SemiringNetwork::new(S::default());
    net.add_node(X, x.len(), Some(x.to_vec())).map_err(e)?;
    net.add_node(Y, a.nrows(), None).map_err(e)?;
    net.add_edge(X, Y, Weight::Matrix(a.clone())).map_err(e)?;
    net.run_full().map_err(e)?;
    Ok(net)
}

/// Median seconds of one incremental update and of one full wave, interleaved.
fn incremental<S: Semiring<Elem = f64> + Default>(
    a: &Csr<f64>,
    x: &[f64],
    reps: usize,
    value: impl Fn(usize, f64) -> f64 + Sync,
) -> Result<(f64, f64, usize), String> {
    let e = |e: mmsb_core::Error| e.to_string();
    let mut net = network::<S>(a, x)?;
    let mut rng = StdRng::seed_from_u64(7);
    let (mut inc, mut full) = (Vec::new(), Vec::new());
    let mut touched = 0;
    pool(1)?.install(|| {
        for r in 0..reps {
            let j = rng.gen_range(0..x.len());
            let old = net.input(X).map_err(e)?.map_or(0.0, |b| b[j]);
            let ch = [Change::Input {
                page: X,
                index: j,
                value: value(r, old),
            }];
            let t0 = Instant::now();
            let rep = net.update(&ch).map_err(e)?;
            inc.push(t0.elapsed().as_secs_f64());
            touched += rep.changed_entries();
            let t0 = Instant::now();
            black_box(net.run_full().map_err(e)?);
            full.push(t0.elapsed().as_secs_f64());
        }
        Ok::<(), String>(())
    })?;
    Ok((median(&mut inc), median(&mut full), touched / reps.max(1)))
}

/// Median seconds of one store commit that writes one input entry of the
/// same network declared as semiring nodes of an in-memory `Store` (input
/// page -> node x -> node y over `A`): the commit path, the semiring hook,
/// the incremental wave and applying the node-page deltas. One thread.
fn store_commit(a: &Csr<f64>, x: &[f64], reps: usize) -> Result<f64, String> {
    use mmsb_core::commit::Op;
    use mmsb_core::durable_store::Store;
    use mmsb_core::semiring::SemiringKind;
    use mmsb_core::semiring_nodes::{NodeDecl, SemiringWeight};
    use mmsb_core::{DType, Delta, PageLocation};
    let e = |e: mmsb_core::Error| e.to_string();
    let store = Store::in_memory();
    let n = x.len();
    let page = |len: usize| Op::CreatePage {
        size: (len * 8) as u64,
        location: PageLocation::Cpu,
    };
    let ids = store
        .commit(vec![page(n), page(n), page(a.nrows())])
        .map_err(e)?
        .created;
    let [input, px, py] = [ids[0], ids[1], ids[2]];
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    store
        .commit(vec![Op::Delta(Delta::dense(input, 0, bytes))])
        .map_err(e)?;
    let decl = |len: usize, input| NodeDecl {
        kind: SemiringKind::PlusTimes,
        dtype: DType::F64,
        len: len as u64,
        input,
    };
    store
        .declare_semiring_node(px, decl(n, Some(input)))
        .map_err(e)?;
    store
        .declare_semiring_node(py, decl(a.nrows(), None))
        .map_err(e)?;
    store
        .add_semiring_edge(px, py, SemiringWeight::csr(a))
        .map_err(e)?;
    let mut rng = StdRng::seed_from_u64(8);
    let mut times = Vec::with_capacity(reps);
    pool(1)?.install(|| {
        for r in 0..reps {
            let j = rng.gen_range(0..n);
            let v = (r as f64 * 0.01).to_le_bytes().to_vec();
            let ops = vec![Op::Delta(Delta::dense(input, (j * 8) as u64, v))];
            let t0 = Instant::now();
            black_box(store.commit(ops).map_err(e)?);
            times.push(t0.elapsed().as_secs_f64());
        }
        Ok::<(), String>(())
    })?;
    Ok(median(&mut times))
}

/// Runs the mxv cases; returns the value of `semiring.json`'s `"mxv"` key.
pub fn run(quick: bool, reps: usize, results_dir: &Path) -> Result<Value, String> {
    let (n, k) = if quick { (20_000, 10) } else { (100_000, 10) };
    let mut rng = StdRng::seed_from_u64(42);
    let a = random_csr(n, k, &mut rng)?;
    let x: Vec<f64> = (0..n).map(|_| rng.gen_range(0.0..1.0)).collect();
    println!(
        "semiring mxv: {n} x {n} CSR, {} stored entries, best of {reps}; yardstick \
         SuiteSparse:GraphBLAS GrB_mxv on the same matrix and vector",
        a.nnz()
    );
    let mut skipped = None;
    let gb = match graphblas_python(quick, results_dir)
        .and_then(|py| run_graphblas(&py, &a, &x, reps))
    {
        Ok(g) => Some(g),
        Err(msg) => {
            println!("semiring mxv: GraphBLAS cases skipped: {msg}");
            skipped = Some(msg);
            None
        }
    };
    let mut results = Vec::new();
    for t in THREADS {
        for name in ["plus_times", "min_plus"] {
            let (kern, wave, y) = match name {
                "plus_times" => time_ours::<PlusTimes<f64>>(&a, &x, t, reps)?,
                _ => time_ours::<MinPlus<f64>>(&a, &x, t, reps)?,
            };
            let yard = gb.as_ref().and_then(|g| {
                g.best
                    .iter()
                    .find(|(s, th, _)| s == name && *th == t)
                    .map(|b| b.2)
            });
            if let Some(g) = &gb {
                let want = read_f64(&g.dir.join(format!("y_{name}_{t}.bin")))?;
                let tol = if name == "plus_times" { 1e-9 } else { 0.0 };
                let bad = y
                    .iter()
                    .zip(&want)
                    .filter(|(a, b)| a != b && (*a - *b).abs() > tol * (1.0 + b.abs()))
                    .count();
                if bad > 0 || want.len() != y.len() {
                    return Err(format!(
                        "{name}: {bad} entries differ from GraphBLAS's result"
                    ));
                }
            }
            for (what, ours) in [("kernel", kern), ("wave", wave)] {
                let ratio = yard.map(|g| round3(g / ours));
                println!(
                    "semiring/mxv/{name}/f64/threads={t}/{what:<6} {:8.3} ms  GraphBLAS {}  ratio={} target=1",
                    ours * 1e3,
                    yard.map_or("skipped".into(), |g| format!("{:8.3} ms", g * 1e3)),
                    ratio.map_or("-".into(), |r| r.to_string()),
                );
                results.push(json!({
                    "name": format!("mxv/{name}/f64/threads={t}/{what}"),
                    "value": round3(ours * 1e3),
                    "unit": "ms",
                    "yardstick": "SuiteSparse:GraphBLAS GrB_mxv, same matrix, vector and thread count",
                    "yardstick_value": yard.map(|g| round3(g * 1e3)),
                    "ratio": ratio,
                    "target": 1.0,
                }));
            }
        }
    }
    let inc_reps = if quick { 20 } else { 200 };
    let cases: [(&str, f64, f64, usize); 3] = {
        let (i1, f1, c1) = incremental::<PlusTimes<f64>>(&a, &x, inc_reps, |r, _| r as f64 * 0.01)?;
        let (i2, f2, c2) = incremental::<MinPlus<f64>>(&a, &x, inc_reps, |_, old| old * 0.5)?;
        let (i3, f3, c3) = incremental::<MinPlus<f64>>(&a, &x, inc_reps, |_, old| old + 10.0)?;
        [
            ("plus_times/f64/one_input_entry", i1, f1, c1),
            ("min_plus/f64/one_input_entry_improves", i2, f2, c2),
            ("min_plus/f64/one_input_entry_worsens", i3, f3, c3),
        ]
    };
    for (name, inc, full, touched) in cases {
        let ratio = full / inc;
        println!(
            "semiring/incremental/{name:<38} {:9.2} us  full wave {:9.2} us  speed-up={ratio:.0}x target=100 \
             ({touched} entries changed per update)",
            inc * 1e6,
            full * 1e6
        );
        results.push(json!({
            "name": format!("incremental/{name}"),
            "value": round3(inc * 1e6),
            "unit": "us (median)",
            "yardstick": "a full wave of the same network (median)",
            "yardstick_value": round3(full * 1e6),
            "ratio": round3(ratio),
            "target": 100.0,
            "entries_changed_per_update": touched,
        }));
    }
    // The same update through a store commit (semiring nodes), against the
    // plus-times full wave of the same network measured above.
    let commit = store_commit(&a, &x, inc_reps)?;
    let full = cases[0].2;
    let ratio = full / commit;
    println!(
        "semiring/incremental/plus_times/f64/store_commit_one_input_entry {:9.2} us  full wave {:9.2} us  speed-up={ratio:.0}x target=100",
        commit * 1e6,
        full * 1e6
    );
    results.push(json!({
        "name": "incremental/plus_times/f64/store_commit_one_input_entry",
        "value": round3(commit * 1e6),
        "unit": "us (median)",
        "yardstick": "a full wave of the same network (median, the plus_times case above)",
        "yardstick_value": round3(full * 1e6),
        "ratio": round3(ratio),
        "target": 100.0,
    }));
    if let Some(g) = &gb {
        let _ = std::fs::remove_dir_all(&g.dir);
    }
    Ok(json!({
        "matrix": {"rows": n, "cols": n, "nnz": a.nnz(), "per_row": k, "seed": 42},
        "graphblas": match &gb {
            Some(g) => json!({"available": true, "version": g.version, "call": g.call}),
            None => json!({"available": false, "skipped": skipped}),
        },
        "results": results,
    }))
}

/// `--mxv-only`: runs the mxv cases and replaces the `"mxv"` key of an
/// existing `semiring.json` (or writes a new one holding only that key).
pub fn run_only(quick: bool, reps: usize, results_dir: &Path) -> Result<(), String> {
    let mxv = run(quick, reps, results_dir)?;
    let path = results_dir.join("semiring.json");
    let mut doc: Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| {
            json!({
                "group": "semiring",
                "date": crate::machine::today(),
                "machine": crate::machine::machine_json(),
                "quick": quick,
            })
        });
    let Some(obj) = doc.as_object_mut() else {
        return Err(format!("{} is not a JSON object", path.display()));
    };
    obj.insert(crate::bench_semiring::MXV_KEY.to_string(), mxv);
    std::fs::create_dir_all(results_dir).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("wrote the mxv key of {}", path.display());
    Ok(())
}

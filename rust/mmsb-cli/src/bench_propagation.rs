//! `mmsb bench propagation`: the propagation engine against salsa, the
//! engine's own cost per recomputed page, and the dependency graph's
//! topological sort and BFS against a plain adjacency-list yardstick.
//!
//! **Updates/s against salsa.** Each graph shape is built twice in the same
//! process: as an [`Engine`] (one page per node, data edges, a Rust-closure
//! recompute function on every derived page) and as a salsa 0.28 database
//! (one `#[salsa::input]` per input page holding its bytes, one input per
//! derived node holding its parent list, and one `#[salsa::tracked]` function
//! that computes a derived node from its parents). Both run the same user
//! function, [`sum_kernel`]: the page is viewed as little-endian `u64` words
//! and the derived word `i` is the wrapping sum of word `i` of every parent,
//! plus one in word 0 (so every level differs). An update writes a fresh
//! counter into the first 8 bytes of an input page. A *batch* of `B` updates
//! is one engine commit of `B` deltas (one wave), and for salsa `B` input
//! sets (each a revision bump, with the page's bytes cloned and patched since
//! salsa inputs are whole values) followed by one query of every sink the
//! batch reaches (the derived pages without derived children that lie
//! downstream of an updated input). Which sinks those are is computed before
//! timing, which favours salsa (it is spared the reachability walk the engine
//! does in every wave). Salsa then re-executes exactly the derived nodes the
//! engine recomputes (both cut off on equal values: salsa backdates, the
//! engine compares bytes). The engine runs on a one-thread rayon pool unless
//! `--threads` says otherwise, since salsa's query here is single-threaded.
//! Before timing, the first batches are applied to both and every derived
//! page is compared (the engine's bytes against salsa's value), so the two
//! are known to compute the same thing. `ratio` = engine updates/s / salsa
//! updates/s, target >= 1.
//!
//! Shapes (`--quick` shrinks each): `chain1000` (1 input, 999 derived in a
//! line), `diamond32x32` (a lattice of 32 rows of 32: row 0 inputs, node
//! `(r, i)` reads `(r-1, i)` and `(r-1, (i+1) mod 32)`), `fanout10k` (1 input
//! read by 10,000 derived pages), `fanin10k` (10,000 inputs read by one
//! derived page), `dag100k` (1,000 inputs, 10,000 derived pages with 10
//! distinct parents each drawn uniformly from the earlier nodes: 100,000
//! edges). Pages of 64 B and 4 KiB; batches of 1 and 1000.
//!
//! **Engine overhead per recomputed page.** On `chain1000` and `fanout10k`
//! (batch 1), the engine runs a trivial function (first word of the first
//! parent plus one); the time per commit divided by the pages recomputed,
//! minus the trivial function's own time (called directly in a loop on the
//! same bytes), is what the engine spends per page beyond the user function:
//! planning, copying the page into the scratch buffer, the cutoff compare,
//! writing the changed range (an in-memory `Engine::commit` builds no
//! provenance strings). Target <= 1 us. The line also shows the same
//! difference computed with [`sum_kernel`] (engine time per page minus the
//! kernel alone).
//!
//! **Graph.** A random DAG of 100,000 nodes and 1,000,000 edges (`u -> v`
//! with `u < v`), as a [`DependencyGraph`] (nodes added in id order, then the
//! edges in random order, so the incremental order never has to move a node)
//! and, for the yardstick written here, as plain `Vec<Vec<u32>>` adjacency
//! lists. `graph_build`: edges/s of `add_edge` (duplicate and cycle checks,
//! order maintenance) against pushing the edges into adjacency lists plus one
//! Kahn sort. `graph_topo_sort`: edges/s of what a wave does to order its
//! region, `topo_order_of(descendants(sources) + sources)`, against Kahn's
//! algorithm (in-degree count, queue) on the adjacency lists. `graph_topo_order`:
//! reading out the maintained order (`topo_order`) against the same Kahn sort.
//! `graph_bfs`: `bfs(sources)` against a queue BFS with a visited bit vector.
//! Edges/s count the edges leaving the visited nodes. No targets.

use clap::Args;
use mmsb_core::{
    Delta, DependencyGraph, EdgeKind, Engine, PageId, PageLocation, RecomputeFn, RecomputeInputs,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use salsa::Setter;
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `mmsb bench propagation`.
#[derive(Args)]
pub struct BenchPropagationArgs {
    /// Seconds per measurement (each side of each case).
    #[arg(long, default_value_t = 0.3)]
    pub seconds: f64,
    /// Alternating repetitions per case (the best of each side is reported).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Threads of the rayon pool the engine's waves run on (salsa runs on one).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Directory for propagation.json (default: benchmark/results of the repository).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A CI-sized smoke run (small graphs; numbers not meaningful).
    #[arg(long)]
    pub quick: bool,
    /// Run only the cases whose name contains this (e.g. `chain`, `graph_`).
    #[arg(long)]
    pub only: Option<String>,
    /// What is timed: the working thread's CPU time (default; robust to a
    /// loaded machine) or wall-clock time (forced when --threads > 1).
    #[arg(long, value_enum, default_value_t = Clock::Cpu)]
    pub clock: Clock,
    /// A note stored in the result file (e.g. that the machine was shared).
    #[arg(long)]
    pub note: Option<String>,
}

fn es(e: impl std::fmt::Display) -> String {
    e.to_string()
}

// ---------------------------------------------------------------------------
// The user functions, shared by both sides.

/// The benchmark's recompute function, called once per parent: adds the
/// parent's little-endian `u64` words into `out`'s (wrapping).
pub fn sum_kernel(out: &mut [u8], parent: &[u8]) {
    for (o, p) in out.chunks_exact_mut(8).zip(parent.chunks_exact(8)) {
        let mut a = [0u8; 8];
        a.copy_from_slice(o);
        let mut b = [0u8; 8];
        b.copy_from_slice(p);
        let s = u64::from_le_bytes(a).wrapping_add(u64::from_le_bytes(b));
        o.copy_from_slice(&s.to_le_bytes());
    }
}

/// Starts a derived page's value: all zero.
fn sum_begin(out: &mut [u8]) {
    out.fill(0);
}

/// Ends a derived page's value: one more in word 0.
fn sum_end(out: &mut [u8]) {
    add_word0(out, 1);
}

fn word0(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(..8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn add_word0(out: &mut [u8], k: u64) {
    if let Some(s) = out.get_mut(..8) {
        let v = word0(s).wrapping_add(k);
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// The whole user function on a list of parents.
fn sum_all<'a>(out: &mut [u8], parents: impl IntoIterator<Item = &'a [u8]>) {
    sum_begin(out);
    for p in parents {
        sum_kernel(out, p);
    }
    sum_end(out);
}

/// The trivial function of the overhead measurement: word 0 of the first parent, plus one.
fn trivial(out: &mut [u8], first: &[u8]) {
    let v = word0(first).wrapping_add(1);
    if let Some(s) = out.get_mut(..8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn sum_fn() -> RecomputeFn {
    RecomputeFn::rust(|inp: &RecomputeInputs<'_>, out: &mut [u8]| {
        sum_all(out, inp.inputs.iter().copied());
        Ok(())
    })
}

fn trivial_fn() -> RecomputeFn {
    RecomputeFn::rust(|inp: &RecomputeInputs<'_>, out: &mut [u8]| {
        trivial(out, inp.inputs.first().copied().unwrap_or(&[]));
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Graph shapes.

/// A DAG whose nodes `0..inputs` are inputs and whose node `inputs + k` is
/// derived from `parents[k]` (all smaller indices).
struct Shape {
    name: String,
    inputs: usize,
    parents: Vec<Vec<u32>>,
}

impl Shape {
    fn nodes(&self) -> usize {
        self.inputs + self.parents.len()
    }

    fn edges(&self) -> usize {
        self.parents.iter().map(Vec::len).sum()
    }

    fn children(&self) -> Vec<Vec<u32>> {
        let mut ch = vec![Vec::new(); self.nodes()];
        for (k, ps) in self.parents.iter().enumerate() {
            for &p in ps {
                ch[p as usize].push((self.inputs + k) as u32);
            }
        }
        ch
    }

    fn chain(n: usize) -> Shape {
        Shape {
            name: format!("chain{n}"),
            inputs: 1,
            parents: (0..n - 1).map(|k| vec![k as u32]).collect(),
        }
    }

    fn diamond(w: usize, rows: usize) -> Shape {
        let mut parents = Vec::new();
        for r in 1..rows {
            for i in 0..w {
                let a = ((r - 1) * w + i) as u32;
                let b = ((r - 1) * w + (i + 1) % w) as u32;
                parents.push(if a == b { vec![a] } else { vec![a, b] });
            }
        }
        Shape {
            name: format!("diamond{w}x{rows}"),
            inputs: w,
            parents,
        }
    }

    fn fanout(n: usize) -> Shape {
        Shape {
            name: format!("fanout{}", human(n)),
            inputs: 1,
            parents: vec![vec![0]; n],
        }
    }

    fn fanin(n: usize) -> Shape {
        Shape {
            name: format!("fanin{}", human(n)),
            inputs: n,
            parents: vec![(0..n as u32).collect()],
        }
    }

    fn random_dag(inputs: usize, derived: usize, k: usize, seed: u64) -> Shape {
        let mut rng = StdRng::seed_from_u64(seed);
        let parents = (0..derived)
            .map(|d| {
                let below = inputs + d;
                let mut ps: Vec<u32> = rand::seq::index::sample(&mut rng, below, k.min(below))
                    .into_iter()
                    .map(|x| x as u32)
                    .collect();
                ps.sort_unstable();
                ps
            })
            .collect::<Vec<_>>();
        let edges = derived * k;
        Shape {
            name: format!("dag{}", human(edges)),
            inputs,
            parents,
        }
    }
}

fn human(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// One batch of updates: the input indices written, and the sinks it reaches.
struct Batch {
    inputs: Vec<u32>,
    sinks: Vec<u32>,
    /// Derived nodes downstream of the batch's inputs.
    cone: usize,
}

fn make_batches(shape: &Shape, size: usize, count: usize, seed: u64) -> Vec<Batch> {
    let children = shape.children();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = vec![u32::MAX; shape.nodes()];
    (0..count)
        .map(|b| {
            let inputs: Vec<u32> = (0..size)
                .map(|_| rng.gen_range(0..shape.inputs) as u32)
                .collect();
            let mut stack: Vec<u32> = Vec::new();
            for &i in &inputs {
                if seen[i as usize] != b as u32 {
                    seen[i as usize] = b as u32;
                    stack.push(i);
                }
            }
            let (mut sinks, mut cone) = (Vec::new(), 0);
            while let Some(w) = stack.pop() {
                if w as usize >= shape.inputs {
                    cone += 1;
                    if children[w as usize].is_empty() {
                        sinks.push(w);
                    }
                }
                for &c in &children[w as usize] {
                    if seen[c as usize] != b as u32 {
                        seen[c as usize] = b as u32;
                        stack.push(c);
                    }
                }
            }
            sinks.sort_unstable();
            Batch {
                inputs,
                sinks,
                cone,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The engine side.

struct EngineSide {
    engine: Engine,
    pages: Vec<PageId>,
    counter: u64,
}

impl EngineSide {
    fn build(shape: &Shape, page: u64, f: impl Fn() -> RecomputeFn) -> Result<EngineSide, String> {
        let mut engine = Engine::new();
        let pages = (0..shape.nodes())
            .map(|_| engine.create_page(page, PageLocation::Cpu))
            .collect::<Result<Vec<_>, _>>()
            .map_err(es)?;
        for (k, ps) in shape.parents.iter().enumerate() {
            let child = pages[shape.inputs + k];
            for &p in ps {
                engine
                    .add_edge(pages[p as usize], child, EdgeKind::Data, None)
                    .map_err(es)?;
            }
            engine.set_recompute(child, f()).map_err(es)?;
        }
        engine.propagate().map_err(es)?;
        Ok(EngineSide {
            engine,
            pages,
            counter: 0,
        })
    }

    /// One commit of the batch's updates; returns the pages recomputed.
    fn run(&mut self, b: &Batch) -> Result<usize, String> {
        let deltas: Vec<Delta> = b
            .inputs
            .iter()
            .map(|&i| {
                self.counter += 1;
                Delta::dense(
                    self.pages[i as usize],
                    0,
                    self.counter.to_le_bytes().to_vec(),
                )
            })
            .collect();
        let r = self.engine.commit(&deltas).map_err(es)?;
        Ok(r.recomputed.len())
    }

    fn bytes(&self, node: usize) -> Result<&[u8], String> {
        Ok(self
            .engine
            .store()
            .page(self.pages[node])
            .map_err(es)?
            .bytes())
    }
}

// ---------------------------------------------------------------------------
// The salsa side: the same graph as inputs and one tracked function.

#[salsa::db]
#[derive(Default, Clone)]
struct SalsaDb {
    storage: salsa::Storage<Self>,
}

#[salsa::db]
impl salsa::Database for SalsaDb {}

/// An input page.
#[salsa::input(debug)]
struct SrcPage {
    #[returns(ref)]
    bytes: Vec<u8>,
}

/// A derived node: its size and its parents (fixed after setup).
#[salsa::input(debug)]
struct DerivedNode {
    #[returns(copy)]
    size: u32,
    #[returns(ref)]
    parents: Vec<Parent>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Parent {
    Src(SrcPage),
    Derived(DerivedNode),
}

/// A derived node's value: [`sum_all`] over its parents' values.
#[salsa::tracked(returns(ref))]
fn derived_value(db: &dyn salsa::Database, node: DerivedNode) -> Vec<u8> {
    let mut out = vec![0u8; node.size(db) as usize];
    sum_begin(&mut out);
    for p in node.parents(db) {
        let bytes: &[u8] = match *p {
            Parent::Src(s) => s.bytes(db),
            Parent::Derived(d) => derived_value(db, d),
        };
        sum_kernel(&mut out, bytes);
    }
    sum_end(&mut out);
    out
}

struct SalsaSide {
    db: SalsaDb,
    srcs: Vec<SrcPage>,
    derived: Vec<DerivedNode>,
    inputs: usize,
    counter: u64,
}

impl SalsaSide {
    fn build(shape: &Shape, page: u64) -> SalsaSide {
        let db = SalsaDb::default();
        let srcs: Vec<SrcPage> = (0..shape.inputs)
            .map(|_| SrcPage::new(&db, vec![0u8; page as usize]))
            .collect();
        let mut derived: Vec<DerivedNode> = Vec::with_capacity(shape.parents.len());
        for ps in &shape.parents {
            let parents = ps
                .iter()
                .map(|&p| {
                    let p = p as usize;
                    if p < shape.inputs {
                        Parent::Src(srcs[p])
                    } else {
                        Parent::Derived(derived[p - shape.inputs])
                    }
                })
                .collect();
            derived.push(DerivedNode::new(&db, page as u32, parents));
        }
        let s = SalsaSide {
            db,
            srcs,
            derived,
            inputs: shape.inputs,
            counter: 0,
        };
        for &d in &s.derived {
            black_box(derived_value(&s.db, d).len());
        }
        s
    }

    /// The batch's input sets, then a query of the sinks it reaches.
    fn run(&mut self, b: &Batch) {
        for &i in &b.inputs {
            self.counter += 1;
            let src = self.srcs[i as usize];
            let mut v = src.bytes(&self.db).clone();
            v[..8].copy_from_slice(&self.counter.to_le_bytes());
            src.set_bytes(&mut self.db).to(v);
        }
        for &s in &b.sinks {
            let d = self.derived[s as usize - self.inputs];
            black_box(derived_value(&self.db, d)[0]);
        }
    }

    fn bytes(&self, node: usize) -> &[u8] {
        if node < self.inputs {
            self.srcs[node].bytes(&self.db)
        } else {
            derived_value(&self.db, self.derived[node - self.inputs])
        }
    }
}

// ---------------------------------------------------------------------------
// Measurement.

/// What the measurements time: the measuring thread's CPU time (the default:
/// time the thread spends descheduled on a shared machine does not count) or
/// wall-clock time (needed when the engine runs on several threads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Clock {
    /// `CLOCK_THREAD_CPUTIME_ID` of the thread that runs the work.
    Cpu,
    /// `std::time::Instant`.
    Wall,
}

/// CPU time consumed by the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable `timespec` that `clock_gettime` only
    // writes; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

impl Clock {
    /// A reading of this clock, in seconds, on the calling thread.
    fn now(self, origin: Instant) -> f64 {
        match self {
            Clock::Cpu => thread_cpu_seconds(),
            Clock::Wall => origin.elapsed().as_secs_f64(),
        }
    }
}

/// Runs `f` on batches (cycling) for about `secs` of `clock` (at least `min`
/// calls), on the calling thread; returns (batches run, seconds).
fn timed(
    clock: Clock,
    secs: f64,
    min: usize,
    n: usize,
    start: &mut usize,
    mut f: impl FnMut(usize) -> Result<(), String>,
) -> Result<(usize, f64), String> {
    let origin = Instant::now();
    let t0 = clock.now(origin);
    let mut k = 0;
    loop {
        f(*start % n)?;
        *start += 1;
        k += 1;
        let el = clock.now(origin) - t0;
        if k >= min && el >= secs {
            return Ok((k, el));
        }
    }
}

struct Report {
    results: Vec<Value>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        name: &str,
        value: f64,
        unit: &str,
        yardstick: &str,
        yardstick_value: f64,
        ratio: f64,
        target: Option<f64>,
        extra: Value,
    ) {
        let t = target.map_or("-".to_owned(), |t| t.to_string());
        println!(
            "propagation/{name:<30} {value:12.3} {unit:<10} {yardstick}: {yardstick_value:12.3}  ratio={ratio:.3} target={t}"
        );
        let mut r = json!({
            "name": name,
            "value": round3(value),
            "unit": unit,
            "yardstick": yardstick,
            "yardstick_value": round3(yardstick_value),
            "ratio": round3(ratio),
            "target": target,
        });
        if let (Some(o), Value::Object(e)) = (r.as_object_mut(), extra) {
            o.extend(e);
        }
        self.results.push(r);
    }
}

fn round3(x: f64) -> f64 {
    if x.abs() >= 1.0 {
        (x * 1000.0).round() / 1000.0
    } else {
        // Keep three significant digits of small values (microseconds per page, ratios).
        let s = 10f64.powi(3 - x.abs().log10().floor() as i32 - 1);
        if s.is_finite() {
            (x * s).round() / s
        } else {
            x
        }
    }
}

struct Sizes {
    chain: usize,
    diamond: usize,
    fan: usize,
    dag_inputs: usize,
    dag_derived: usize,
    dag_k: usize,
    graph_nodes: usize,
    graph_edges: usize,
    big_batch: usize,
}

const FULL: Sizes = Sizes {
    chain: 1000,
    diamond: 32,
    fan: 10_000,
    dag_inputs: 1000,
    dag_derived: 10_000,
    dag_k: 10,
    graph_nodes: 100_000,
    graph_edges: 1_000_000,
    big_batch: 1000,
};

const QUICK: Sizes = Sizes {
    chain: 100,
    diamond: 8,
    fan: 500,
    dag_inputs: 50,
    dag_derived: 500,
    dag_k: 4,
    graph_nodes: 2000,
    graph_edges: 10_000,
    big_batch: 50,
};

/// Batches applied to both sides and compared before timing.
const CHECK_BATCHES: usize = 3;
/// Distinct batches cycled through while timing.
const BATCHES: usize = 16;

/// Checks that the engine and salsa hold the same bytes for every node.
fn cross_check(shape: &Shape, e: &EngineSide, s: &SalsaSide) -> Result<(), String> {
    for n in 0..shape.nodes() {
        if e.bytes(n)? != s.bytes(n) {
            return Err(format!(
                "{}: node {n} differs between the engine and salsa",
                shape.name
            ));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn updates_case(
    rep: &mut Report,
    pool: &rayon::ThreadPool,
    shape: &Shape,
    page: u64,
    batch: usize,
    clock: Clock,
    secs: f64,
    reps: usize,
    name: &str,
) -> Result<(), String> {
    let batches = make_batches(shape, batch, BATCHES, 0x5eed ^ page ^ batch as u64);
    let mut es_ = pool.install(|| EngineSide::build(shape, page, sum_fn))?;
    let mut ss = SalsaSide::build(shape, page);
    for b in batches.iter().take(CHECK_BATCHES) {
        pool.install(|| es_.run(b))?;
        ss.run(b);
    }
    cross_check(shape, &es_, &ss)?;
    let n = batches.len();
    let (mut best_e, mut best_s) = (0f64, 0f64);
    let (mut ie, mut is) = (0usize, 0usize);
    let mut recomputed = 0usize;
    let mut commits = 0usize;
    for _ in 0..reps {
        let (k, t) = pool.install(|| {
            timed(clock, secs, 2, n, &mut ie, |i| {
                recomputed += es_.run(&batches[i])?;
                commits += 1;
                Ok(())
            })
        })?;
        best_e = best_e.max((k * batch) as f64 / t);
        let (k, t) = timed(clock, secs, 2, n, &mut is, |i| {
            ss.run(&batches[i]);
            Ok(())
        })?;
        best_s = best_s.max((k * batch) as f64 / t);
    }
    let cone = batches.iter().map(|b| b.cone).sum::<usize>() as f64 / n as f64;
    rep.add(
        name,
        best_e,
        "updates/s",
        "salsa 0.28 updates/s",
        best_s,
        best_e / best_s,
        Some(1.0),
        json!({
            "nodes": shape.nodes(),
            "edges": shape.edges(),
            "page_bytes": page,
            "batch": batch,
            "recomputed_per_commit": round3(recomputed as f64 / commits.max(1) as f64),
            "downstream_per_batch": round3(cone),
        }),
    );
    Ok(())
}

/// Seconds per call of `f`, best of `reps` runs of about `secs`.
fn per_call(clock: Clock, secs: f64, reps: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let origin = Instant::now();
        let t0 = clock.now(origin);
        let (mut k, mut chunk) = (0u64, 64u64);
        loop {
            for _ in 0..chunk {
                f();
            }
            k += chunk;
            let el = clock.now(origin) - t0;
            // Read the clock at most every ~1/100 of the window, so its own
            // cost (a system call for the CPU clock) stays out of the result.
            if el * 100.0 < secs && chunk < 1 << 24 {
                chunk *= 2;
            }
            if el >= secs / 4.0 {
                best = best.min(el / k as f64);
                break;
            }
        }
    }
    best
}

#[allow(clippy::too_many_arguments)]
fn overhead_case(
    rep: &mut Report,
    pool: &rayon::ThreadPool,
    shape: &Shape,
    page: u64,
    clock: Clock,
    secs: f64,
    reps: usize,
    name: &str,
) -> Result<(), String> {
    let batches = make_batches(shape, 1, BATCHES, 0x0e4d ^ page);
    let n = batches.len();
    // Engine time per recomputed page, with the trivial and with the sum function.
    let per_page = |f: fn() -> RecomputeFn| -> Result<f64, String> {
        let mut side = pool.install(|| EngineSide::build(shape, page, f))?;
        let mut best = f64::INFINITY;
        let mut i = 0;
        for _ in 0..reps {
            let mut pages = 0usize;
            let (_, t) = pool.install(|| {
                timed(clock, secs, 2, n, &mut i, |b| {
                    pages += side.run(&batches[b])?;
                    Ok(())
                })
            })?;
            best = best.min(t / pages.max(1) as f64);
        }
        Ok(best)
    };
    let eng_trivial = per_page(trivial_fn)?;
    let eng_sum = per_page(sum_fn)?;
    // The functions alone, on the same bytes.
    let parent = vec![7u8; page as usize];
    let mut out = vec![0u8; page as usize];
    let fn_trivial = per_call(clock, secs, reps, || {
        trivial(black_box(&mut out), black_box(&parent));
    });
    let fn_sum = per_call(clock, secs, reps, || {
        sum_all(black_box(&mut out), [black_box(&parent[..])]);
    });
    let us = 1e6;
    let overhead = (eng_trivial - fn_trivial) * us;
    rep.add(
        name,
        overhead,
        "us/page",
        "absolute target us/page (lower is better; ratio = value / 1 us)",
        1.0,
        overhead,
        Some(1.0),
        json!({
            "direction": "lower is better",
            "page_bytes": page,
            "engine_trivial_fn_us_per_page": round3(eng_trivial * us),
            "trivial_fn_alone_us": round3(fn_trivial * us),
            "engine_sum_fn_us_per_page": round3(eng_sum * us),
            "sum_fn_alone_us": round3(fn_sum * us),
            "overhead_with_sum_fn_us": round3((eng_sum - fn_sum) * us),
        }),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Graph algorithms: DependencyGraph against plain adjacency lists.

/// The yardstick's graph: adjacency lists.
struct Adj {
    out: Vec<Vec<u32>>,
}

impl Adj {
    fn build(n: usize, edges: &[(u32, u32)]) -> Adj {
        let mut out = vec![Vec::new(); n];
        for &(u, v) in edges {
            out[u as usize].push(v);
        }
        for o in &mut out {
            o.sort_unstable();
        }
        Adj { out }
    }

    /// Kahn's algorithm: in-degrees, then a queue of ready nodes.
    fn kahn(&self) -> Vec<u32> {
        let n = self.out.len();
        let mut indeg = vec![0u32; n];
        for o in &self.out {
            for &v in o {
                indeg[v as usize] += 1;
            }
        }
        let mut order: Vec<u32> = (0..n as u32).filter(|&v| indeg[v as usize] == 0).collect();
        let mut head = 0;
        while head < order.len() {
            let w = order[head];
            head += 1;
            for &v in &self.out[w as usize] {
                indeg[v as usize] -= 1;
                if indeg[v as usize] == 0 {
                    order.push(v);
                }
            }
        }
        order
    }

    fn bfs(&self, roots: &[u32]) -> Vec<u32> {
        let mut seen = vec![false; self.out.len()];
        let mut q: VecDeque<u32> = VecDeque::new();
        for &r in roots {
            if !seen[r as usize] {
                seen[r as usize] = true;
                q.push_back(r);
            }
        }
        let mut order = Vec::with_capacity(self.out.len());
        while let Some(w) = q.pop_front() {
            order.push(w);
            for &v in &self.out[w as usize] {
                if !seen[v as usize] {
                    seen[v as usize] = true;
                    q.push_back(v);
                }
            }
        }
        order
    }
}

fn page_of(v: u32) -> PageId {
    PageId(u64::from(v) + 1)
}

fn graph_cases(
    rep: &mut Report,
    nodes: usize,
    edges: usize,
    clock: Clock,
    reps: usize,
    want: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let origin = Instant::now();
    let now = || clock.now(origin);
    if ![
        "graph_build",
        "graph_topo_sort",
        "graph_topo_order",
        "graph_bfs",
    ]
    .iter()
    .any(|n| want(n))
    {
        return Ok(());
    }
    let mut rng = StdRng::seed_from_u64(0x6e47);
    let mut set: HashSet<(u32, u32)> = HashSet::with_capacity(edges);
    let mut list: Vec<(u32, u32)> = Vec::with_capacity(edges);
    while list.len() < edges {
        let v = rng.gen_range(1..nodes as u32);
        let u = rng.gen_range(0..v);
        if set.insert((u, v)) {
            list.push((u, v));
        }
    }
    drop(set);
    list.shuffle(&mut rng);
    let label = format!("{}_{}", human(nodes), human(edges));
    let e = edges as f64;

    // Build: add_edge against adjacency lists + one Kahn sort.
    let mut g = DependencyGraph::new();
    let (mut t_build, mut t_adj) = (f64::INFINITY, f64::INFINITY);
    for r in 0..reps.max(1) {
        let t0 = now();
        let adj = Adj::build(nodes, &list);
        black_box(adj.kahn().len());
        t_adj = t_adj.min(now() - t0);
        drop(adj);
        if r == 0 || want("graph_build") {
            let mut fresh = DependencyGraph::new();
            let t0 = now();
            for v in 0..nodes as u32 {
                fresh.add_node(page_of(v));
            }
            for &(u, v) in &list {
                fresh
                    .add_edge(page_of(u), page_of(v), EdgeKind::Data, None)
                    .map_err(es)?;
            }
            t_build = t_build.min(now() - t0);
            g = fresh;
        }
    }
    if g.edge_count() != edges {
        return Err(format!(
            "graph has {} edges, wanted {edges}",
            g.edge_count()
        ));
    }
    if want("graph_build") {
        rep.add(
            &format!("graph_build/{label}"),
            e / t_build,
            "edges/s",
            "adjacency lists + Kahn sort edges/s",
            e / t_adj,
            t_adj / t_build,
            None,
            json!({"nodes": nodes, "edges": edges}),
        );
    }

    let adj = Adj::build(nodes, &list);
    let sources: Vec<u32> = {
        let mut has_parent = vec![false; nodes];
        for &(_, v) in &list {
            has_parent[v as usize] = true;
        }
        (0..nodes as u32)
            .filter(|&v| !has_parent[v as usize])
            .collect()
    };
    let source_pages: Vec<PageId> = sources.iter().map(|&v| page_of(v)).collect();
    // Correctness first: the engine's orders are valid and visit what the yardstick visits.
    let kahn = adj.kahn();
    let ybfs = adj.bfs(&sources);
    let topo = g.topo_order_of(
        g.descendants(source_pages.iter().copied())
            .into_iter()
            .chain(source_pages.iter().copied()),
    );
    let bfs = g.bfs(source_pages.iter().copied());
    if kahn.len() != nodes || topo.len() != ybfs.len() || bfs.len() != ybfs.len() {
        return Err(format!(
            "graph orders disagree: kahn {} topo {} bfs {} yardstick bfs {}",
            kahn.len(),
            topo.len(),
            bfs.len(),
            ybfs.len()
        ));
    }
    let mut pos = vec![usize::MAX; nodes];
    for (i, p) in topo.iter().enumerate() {
        pos[(p.get() - 1) as usize] = i;
    }
    if list
        .iter()
        .any(|&(u, v)| pos[u as usize] != usize::MAX && pos[u as usize] >= pos[v as usize])
    {
        return Err("the engine's topological order puts a child first".into());
    }
    let visited_edges = ybfs
        .iter()
        .map(|&w| adj.out[w as usize].len())
        .sum::<usize>() as f64;

    let bestof = |f: &mut dyn FnMut()| -> f64 {
        let mut best = f64::INFINITY;
        for _ in 0..reps.max(1) {
            let t0 = now();
            f();
            best = best.min(now() - t0);
        }
        best
    };
    let t_kahn = bestof(&mut || {
        black_box(adj.kahn().len());
    });
    if want("graph_topo_sort") {
        let t = bestof(&mut || {
            let region = g
                .descendants(source_pages.iter().copied())
                .into_iter()
                .chain(source_pages.iter().copied());
            black_box(g.topo_order_of(region).len());
        });
        rep.add(
            &format!("graph_topo_sort/{label}"),
            visited_edges / t,
            "edges/s",
            "Kahn on adjacency lists edges/s",
            e / t_kahn,
            (visited_edges / t) / (e / t_kahn),
            None,
            json!({"nodes": nodes, "edges": edges, "what": "topo_order_of(descendants(sources) + sources)"}),
        );
    }
    if want("graph_topo_order") {
        let t = bestof(&mut || {
            black_box(g.topo_order().len());
        });
        rep.add(
            &format!("graph_topo_order/{label}"),
            e / t,
            "edges/s",
            "Kahn on adjacency lists edges/s",
            e / t_kahn,
            t_kahn / t,
            None,
            json!({"nodes": nodes, "edges": edges, "what": "topo_order() (the maintained order, read out)"}),
        );
    }
    if want("graph_bfs") {
        let t_ybfs = bestof(&mut || {
            black_box(adj.bfs(&sources).len());
        });
        let t = bestof(&mut || {
            black_box(g.bfs(source_pages.iter().copied()).len());
        });
        rep.add(
            &format!("graph_bfs/{label}"),
            visited_edges / t,
            "edges/s",
            "queue BFS on adjacency lists edges/s",
            visited_edges / t_ybfs,
            t_ybfs / t,
            None,
            json!({"nodes": nodes, "edges": edges, "visited_edges": visited_edges}),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------

/// Runs the benchmark (on a thread with a large stack: salsa's first query of
/// a long chain recurses once per node).
pub fn run(args: BenchPropagationArgs) -> Result<(), String> {
    std::thread::Builder::new()
        .name("bench-propagation".into())
        .stack_size(1 << 30)
        .spawn(move || run_inner(args))
        .map_err(es)?
        .join()
        .map_err(|_| "the benchmark thread panicked".to_owned())?
}

fn run_inner(args: BenchPropagationArgs) -> Result<(), String> {
    let (secs, reps, sz) = if args.quick {
        (0.02, 1, &QUICK)
    } else {
        (args.seconds, args.reps, &FULL)
    };
    if secs <= 0.0 || reps == 0 || args.threads == 0 {
        return Err("--seconds, --reps and --threads must be positive".into());
    }
    let clock = if args.threads > 1 {
        Clock::Wall
    } else {
        args.clock
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .map_err(es)?;
    println!(
        "mmsb bench propagation: {secs} s ({clock:?} clock) per measurement, best of {reps} alternating reps, engine on {} rayon thread(s); cpu {}",
        args.threads,
        crate::machine::cpu_name()
    );
    let only = args.only.clone().unwrap_or_default();
    let want = |name: &str| name.contains(only.as_str());
    let mut rep = Report {
        results: Vec::new(),
    };

    let shapes = [
        Shape::chain(sz.chain),
        Shape::diamond(sz.diamond, sz.diamond),
        Shape::fanout(sz.fan),
        Shape::fanin(sz.fan),
        Shape::random_dag(sz.dag_inputs, sz.dag_derived, sz.dag_k, 0xda6),
    ];
    for shape in &shapes {
        for page in [64u64, 4096] {
            for batch in [1, sz.big_batch] {
                let name = format!("updates/{}/p{}/b{batch}", shape.name, page);
                if want(&name) {
                    updates_case(
                        &mut rep, &pool, shape, page, batch, clock, secs, reps, &name,
                    )?;
                }
            }
        }
    }
    for shape in [&shapes[0], &shapes[2]] {
        for page in [64u64, 4096] {
            let name = format!("engine_overhead/{}/p{page}", shape.name);
            if want(&name) {
                overhead_case(&mut rep, &pool, shape, page, clock, secs, reps, &name)?;
            }
        }
    }
    graph_cases(&mut rep, sz.graph_nodes, sz.graph_edges, clock, reps, &want)?;

    let mut machine = crate::machine::machine_json();
    if let (Some(note), Some(m)) = (&args.note, machine.as_object_mut()) {
        m.insert("note".into(), json!(note));
    }
    let doc = json!({
        "group": "propagation",
        "date": crate::machine::today(),
        "machine": machine,
        "quick": args.quick,
        "engine_threads": args.threads,
        "clock": match clock {
            Clock::Cpu => "thread CPU time (CLOCK_THREAD_CPUTIME_ID)",
            Clock::Wall => "wall clock",
        },
        "results": rep.results,
    });
    let dir = args.out.unwrap_or_else(crate::default_results_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join("propagation.json");
    let text = serde_json::to_string_pretty(&doc).map_err(es)?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_clock_advances_with_work_only() {
        let t0 = thread_cpu_seconds();
        assert!(t0.is_finite() && t0 >= 0.0);
        let mut x = 0u64;
        let w = Instant::now();
        while w.elapsed().as_millis() < 20 {
            x = black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let t1 = thread_cpu_seconds();
        assert!(t1 > t0, "{t1} <= {t0}");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let t2 = thread_cpu_seconds();
        // Sleeping costs (almost) no CPU time.
        assert!(t2 - t1 < 0.04, "{}", t2 - t1);
    }

    #[test]
    fn engine_and_salsa_agree_on_every_shape() {
        for shape in [
            Shape::chain(20),
            Shape::diamond(4, 5),
            Shape::fanout(30),
            Shape::fanin(30),
            Shape::random_dag(5, 40, 3, 7),
        ] {
            for page in [64u64, 256] {
                let batches = make_batches(&shape, 3, 6, 11);
                let mut e = EngineSide::build(&shape, page, sum_fn).unwrap();
                let mut s = SalsaSide::build(&shape, page);
                for b in &batches {
                    e.run(b).unwrap();
                    s.run(b);
                }
                cross_check(&shape, &e, &s).unwrap();
            }
        }
    }
}

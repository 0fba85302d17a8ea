//! The propagation engine against its oracle: recomputing everything from
//! scratch. Random DAGs (all edge kinds, random fan-in and fan-out), random
//! update sequences; after every commit:
//!
//! * every derived page equals a from-scratch recomputation over the whole
//!   graph in a topological order the test computes itself (Kahn);
//! * each recompute function ran exactly once for each affected page (one with
//!   a data parent whose bytes changed in this commit, or whose inputs were
//!   redefined), and never for any other page (cutoff);
//! * every input a function saw carried its post-commit epoch (glitch freedom);
//! * stale, invalidated and pending-sync sets equal a model of the rules.

mod common;

use common::dag::{self, eval, DagEdge, Fk, SIZE};
use mmsb_core::{
    ByteTransform, Delta, EdgeKind, Engine, PageId, PageLocation, PropagationMode, RecomputeFn,
    RecomputeInputs,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

unsafe extern "C" fn c_xor(
    user_data: *mut c_void,
    inputs: *const *const u8,
    input_lens: *const u64,
    n: u64,
    out: *mut u8,
    out_len: u64,
) -> i32 {
    // SAFETY: the engine passes `n` valid input pointers and lengths, an
    // `out_len`-byte output buffer, and the counter we registered.
    unsafe {
        let counter = &*(user_data as *const AtomicU64);
        counter.fetch_add(1, Ordering::SeqCst);
        let ptrs = std::slice::from_raw_parts(inputs, n as usize);
        let lens = std::slice::from_raw_parts(input_lens, n as usize);
        let out = std::slice::from_raw_parts_mut(out, out_len as usize);
        out.fill(0);
        for (&p, &l) in ptrs.iter().zip(lens) {
            let inp = std::slice::from_raw_parts(p, l as usize);
            for (o, &b) in out.iter_mut().zip(inp) {
                *o ^= b;
            }
        }
    }
    0
}

type SeenLog = Arc<Mutex<Vec<(PageId, Vec<PageId>, Vec<u64>)>>>;

struct World {
    engine: Engine,
    pages: Vec<PageId>,
    /// (parent, child, kind) in insertion order (the input order of data parents).
    edges: Vec<DagEdge>,
    funcs: BTreeMap<PageId, Fk>,
    calls: Arc<Mutex<HashMap<PageId, u64>>>,
    c_counters: HashMap<PageId, Box<AtomicU64>>,
    seen: SeenLog,
    /// Values of pages without a function (the test's own record).
    sources: HashMap<PageId, [u8; SIZE]>,
    stale: BTreeSet<PageId>,
    invalid: BTreeSet<PageId>,
    gpu: BTreeSet<PageId>,
    forced: BTreeSet<PageId>,
}

impl World {
    fn data_parents(&self, c: PageId) -> Vec<PageId> {
        dag::data_parents(&self.edges, c)
    }

    fn recompute_from_scratch(&self) -> HashMap<PageId, [u8; SIZE]> {
        dag::from_scratch(&self.pages, &self.edges, &self.funcs, &self.sources)
    }

    fn register(&mut self, p: PageId, k: Fk) {
        let f = match k {
            Fk::Pass => RecomputeFn::Passthrough,
            Fk::Xor5a => RecomputeFn::Transform(ByteTransform::XorConst(0x5A)),
            Fk::CXor => {
                let ctr = Box::new(AtomicU64::new(0));
                let ptr = &*ctr as *const AtomicU64 as *mut c_void;
                self.c_counters.insert(p, ctr);
                // SAFETY: `c_xor` only reads its inputs and writes `out`; the
                // counter is boxed, outlives the engine use, and is atomic.
                unsafe { RecomputeFn::c_function(c_xor, ptr, true) }
            }
            Fk::Sum | Fk::Coarse => {
                let calls = Arc::clone(&self.calls);
                let seen = Arc::clone(&self.seen);
                RecomputeFn::rust(move |inp: &RecomputeInputs<'_>, out: &mut [u8]| {
                    *calls.lock().unwrap().entry(inp.page).or_insert(0) += 1;
                    seen.lock().unwrap().push((
                        inp.page,
                        inp.parents.to_vec(),
                        inp.epochs.to_vec(),
                    ));
                    out.copy_from_slice(&eval(k, inp.inputs));
                    Ok(())
                })
            }
        };
        self.engine.set_recompute(p, f).unwrap();
        self.funcs.insert(p, k);
        self.forced.insert(p);
    }

    fn build(n: usize, rng: &mut StdRng, mode: PropagationMode) -> World {
        let mut engine = Engine::new();
        engine.set_mode(mode);
        let pages: Vec<PageId> = (0..n)
            .map(|_| engine.create_page(SIZE as u64, PageLocation::Cpu).unwrap())
            .collect();
        let mut w = World {
            engine,
            pages: pages.clone(),
            edges: Vec::new(),
            funcs: BTreeMap::new(),
            calls: Arc::default(),
            c_counters: HashMap::new(),
            seen: Arc::default(),
            sources: pages.iter().map(|&p| (p, [0u8; SIZE])).collect(),
            stale: BTreeSet::new(),
            invalid: BTreeSet::new(),
            gpu: BTreeSet::new(),
            forced: BTreeSet::new(),
        };
        // A hidden random order makes the DAG; edges are added in random order.
        let cand = dag::random_dag(rng, &pages, 0.25, 8);
        for (a, b, k) in cand {
            w.engine.add_edge(a, b, k, None).unwrap();
            w.edges.push((a, b, k));
            // Adding the reverse edge must fail and change nothing.
            let before = (w.engine.graph().edges(), w.engine.graph().topo_order());
            let e = w.engine.add_edge(b, a, EdgeKind::Data, None).unwrap_err();
            assert_eq!(e.code, mmsb_core::ErrorCode::Cycle);
            assert_eq!(
                (w.engine.graph().edges(), w.engine.graph().topo_order()),
                before
            );
        }
        for &p in &pages {
            if !w.data_parents(p).is_empty() && rng.gen_bool(0.85) {
                let k = match rng.gen_range(0..10) {
                    0..=3 => Fk::Sum,
                    4..=5 => Fk::Coarse,
                    6 => Fk::Pass,
                    7 => Fk::Xor5a,
                    _ => Fk::CXor,
                };
                w.register(p, k);
            }
        }
        w
    }

    fn reset_counts(&mut self) {
        self.calls.lock().unwrap().clear();
        self.seen.lock().unwrap().clear();
        for c in self.c_counters.values() {
            c.store(0, Ordering::SeqCst);
        }
    }

    /// The marking rules, for one commit that changed `changed`.
    fn model_marks(&mut self, changed: &BTreeSet<PageId>) {
        for &(a, b, k) in &self.edges {
            if changed.contains(&a) {
                match k {
                    EdgeKind::Control => self.stale.insert(b),
                    EdgeKind::Compiler => self.invalid.insert(b),
                    EdgeKind::GpuSync => self.gpu.insert(b),
                    EdgeKind::Data => false,
                };
            }
        }
        for p in changed {
            self.stale.remove(p);
            self.invalid.remove(p);
        }
    }

    /// Runs one wave-bearing step and checks everything: `batches = None` is
    /// one immediate commit of `writes`; `Some(k)` is `k` deferred commits
    /// (`writes` split among them) and then one propagate.
    fn step(&mut self, writes: Vec<Delta>, batches: Option<usize>) {
        // The engine's state before the step (equal to the from-scratch values
        // after every checked step, but not before the first wave).
        let before: HashMap<PageId, Vec<u8>> = self
            .pages
            .iter()
            .map(|&p| (p, self.engine.store().read(p).unwrap()))
            .collect();
        self.reset_counts();
        let apply_model = |w: &mut World, ds: &[Delta]| -> BTreeSet<PageId> {
            let mut ch = BTreeSet::new();
            for d in ds {
                let v = w.sources.get_mut(&d.page).unwrap();
                let old = *v;
                let off = d.offset as usize;
                v[off..off + d.len as usize].copy_from_slice(d.payload.bytes());
                if *v != old {
                    ch.insert(d.page);
                }
            }
            ch
        };
        let report = match batches {
            Some(k) => {
                if !writes.is_empty() {
                    let chunk = writes.len().div_ceil(k.max(1));
                    for part in writes.chunks(chunk) {
                        let r = self.engine.commit(part).unwrap();
                        assert!(r.recomputed.is_empty(), "deferred commits run no wave");
                        let ch = apply_model(self, part);
                        self.model_marks(&ch);
                    }
                }
                let r = self.engine.propagate().unwrap();
                let after = self.recompute_from_scratch();
                let derived: BTreeSet<PageId> = self
                    .funcs
                    .keys()
                    .copied()
                    .filter(|p| before[p][..] != after[p][..])
                    .collect();
                self.model_marks(&derived);
                r
            }
            None => {
                let r = self.engine.commit(&writes).unwrap();
                apply_model(self, &writes);
                let after = self.recompute_from_scratch();
                let ch: BTreeSet<PageId> = self
                    .pages
                    .iter()
                    .copied()
                    .filter(|p| before[p][..] != after[p][..])
                    .collect();
                self.model_marks(&ch);
                r
            }
        };
        let after = self.recompute_from_scratch();
        for &p in &self.pages {
            assert_eq!(
                self.engine.store().read(p).unwrap(),
                after[&p].to_vec(),
                "{p} differs from the from-scratch value"
            );
        }
        let changed: BTreeSet<PageId> = self
            .pages
            .iter()
            .copied()
            .filter(|p| before[p][..] != after[p][..])
            .collect();
        // Exactly once per affected page, never elsewhere.
        let affected: BTreeSet<PageId> = self
            .funcs
            .keys()
            .copied()
            .filter(|&p| {
                self.forced.contains(&p) || self.data_parents(p).iter().any(|q| changed.contains(q))
            })
            .collect();
        let ran: Vec<PageId> = report.recomputed.clone();
        let ran_set: BTreeSet<PageId> = ran.iter().copied().collect();
        assert_eq!(ran.len(), ran_set.len(), "a page was recomputed twice");
        assert_eq!(
            ran_set, affected,
            "recomputed set differs from affected set"
        );
        let calls = self.calls.lock().unwrap().clone();
        for (&p, &k) in &self.funcs {
            let n = match k {
                Fk::Sum | Fk::Coarse => calls.get(&p).copied().unwrap_or(0),
                Fk::CXor => self.c_counters[&p].load(Ordering::SeqCst),
                _ => continue,
            };
            assert_eq!(n, u64::from(affected.contains(&p)), "{p} ran {n} times");
        }
        // Glitch freedom: every input seen carried its post-commit epoch.
        for (page, parents, epochs) in self.seen.lock().unwrap().iter() {
            for (q, e) in parents.iter().zip(epochs) {
                let now = self.engine.store().page(*q).unwrap().epoch();
                assert_eq!(*e, now, "{page} saw {q} at epoch {e}, it ended at {now}");
            }
        }
        // Marks.
        assert_eq!(self.engine.stale_pages(), &self.stale);
        assert_eq!(self.engine.invalidated_pages(), &self.invalid);
        assert_eq!(self.engine.pending_gpu_sync(), &self.gpu);
        // The report names every page changed (a propagate: every derived one),
        // at its final epoch.
        for &p in &changed {
            if batches.is_none() || self.funcs.contains_key(&p) {
                let epoch = self.engine.store().page(p).unwrap().epoch();
                assert!(report.changed.contains(&(p, epoch)), "{p} not reported");
            }
        }
        self.forced.clear();
    }

    fn random_writes(&self, rng: &mut StdRng) -> Vec<Delta> {
        let srcs: Vec<PageId> = self
            .pages
            .iter()
            .copied()
            .filter(|p| !self.funcs.contains_key(p))
            .collect();
        let k = rng.gen_range(1..=5).min(srcs.len());
        let mut chosen = BTreeSet::new();
        while chosen.len() < k {
            chosen.insert(srcs[rng.gen_range(0..srcs.len())]);
        }
        chosen
            .into_iter()
            .map(|p| {
                let off = rng.gen_range(0..SIZE);
                let len = rng.gen_range(1..=SIZE - off);
                // Small alphabet: many writes change nothing, or nothing downstream.
                let bytes = (0..len).map(|_| rng.gen_range(0..4u8) * 0x41).collect();
                Delta::dense(p, off as u64, bytes)
            })
            .collect()
    }
}

fn run(seed: u64, n: usize, commits: usize, mode: PropagationMode) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = World::build(n, &mut rng, mode);
    w.step(Vec::new(), Some(0)); // the first wave computes every derived page
    for i in 0..commits {
        // Sometimes redefine a data input: remove a data edge and re-add it.
        if i % 7 == 3 {
            let data: Vec<usize> = (0..w.edges.len())
                .filter(|&j| w.edges[j].2 == EdgeKind::Data)
                .collect();
            if !data.is_empty() {
                let j = data[rng.gen_range(0..data.len())];
                let (a, b, k) = w.edges.remove(j);
                w.engine.remove_edge(a, b, k).unwrap();
                w.engine.add_edge(a, b, k, None).unwrap();
                w.edges.push((a, b, k));
                if w.funcs.contains_key(&b) {
                    w.forced.insert(b);
                }
            }
        }
        let writes = w.random_writes(&mut rng);
        let batches = if mode == PropagationMode::Deferred {
            Some(rng.gen_range(1..=3))
        } else {
            None
        };
        w.step(writes, batches);
    }
    w.engine.graph().check_invariants().unwrap();
}

#[test]
fn random_dags_match_from_scratch_after_every_commit() {
    for seed in 0..12 {
        run(
            seed,
            60 + seed as usize * 10,
            40,
            PropagationMode::Immediate,
        );
    }
}

#[test]
fn deferred_batches_match_from_scratch_after_every_propagate() {
    for seed in 100..108 {
        run(seed, 80, 30, PropagationMode::Deferred);
    }
}

#[test]
fn two_thousand_page_dag_matches_from_scratch() {
    run(7, 2000, 25, PropagationMode::Immediate);
}

/// The same oracle on a one-thread rayon pool (and on a four-thread one): a
/// wave runs every command in the staging arena on one thread, and through
/// per-command output buffers when a level's commands run in parallel, so
/// both paths must give the from-scratch pages.
#[test]
fn random_dags_match_from_scratch_on_one_and_four_threads() {
    for threads in [1, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for seed in 200..206 {
                run(seed, 100, 30, PropagationMode::Immediate);
            }
            run(210, 80, 20, PropagationMode::Deferred);
        });
    }
}

//! Propagation on the durable store, against its oracle (recomputing every
//! page from scratch) and against its own past:
//!
//! * random DAGs with all edge kinds and weights, built and edited through
//!   logged commits (some mixed with deltas), random multi-delta updates, in
//!   immediate mode, in deferred mode with `propagate`, and through batch
//!   routing: after every wave every page equals a from-scratch recomputation
//!   over the test's own edge list, and each function ran exactly once for
//!   each page a model of the rules says is affected, and never otherwise;
//! * replaying to any LSN gives exactly the pages and the graph the store had
//!   right after that commit (checkpoint in the middle included);
//! * close and reopen (on a real directory) and power loss (on the
//!   crash-simulating file system) restore the graph and every derived page
//!   byte for byte with no function call, and propagation then goes on exactly
//!   as the model says, after the functions are re-attached.
//!
//! Sizes: `MMSB_PROP_PAGES` (default 40) pages, `MMSB_PROP_COMMITS` (default
//! 60) update commits per phase.

mod common;

use common::dag::{self, eval, DagEdge, Fk, SIZE};
use mmsb_core::fault_fs::FaultFs;
use mmsb_core::{
    Delta, Durability, Edge, EdgeKind, EdgeWeight, Op, PageId, PageLocation, PropagationMode,
    RecomputeFn, RecomputeInputs, Store, StoreOptions, Target,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

type Calls = Arc<Mutex<HashMap<PageId, u64>>>;

fn make_fn(k: Fk, calls: &Calls) -> RecomputeFn {
    let calls = Arc::clone(calls);
    RecomputeFn::rust(move |inp: &RecomputeInputs<'_>, out: &mut [u8]| {
        *calls.lock().unwrap().entry(inp.page).or_insert(0) += 1;
        out.copy_from_slice(&eval(k, inp.inputs));
        Ok(())
    })
}

/// Everything observable about a store's state: pages (bytes, epoch) and graph.
#[derive(Clone, Debug, PartialEq)]
struct Snap {
    pages: Vec<(PageId, Vec<u8>, u64)>,
    edges: Vec<Edge>,
    topo: Vec<PageId>,
}

fn snap(s: &Store) -> Snap {
    let pages = s.read_with(|st| {
        st.page_ids()
            .into_iter()
            .map(|p| {
                let pg = st.page(p).unwrap();
                (p, pg.bytes().to_vec(), pg.epoch())
            })
            .collect()
    });
    let (edges, topo) = s.with_graph(|g| (g.edges(), g.topo_order()));
    Snap { pages, edges, topo }
}

/// The test's model: its own edge list, functions and source values.
struct World {
    store: Store,
    rng: StdRng,
    pages: Vec<PageId>,
    /// `(parent, child, kind)` in insertion order (the input order of data parents).
    edges: Vec<DagEdge>,
    funcs: BTreeMap<PageId, Fk>,
    sources: HashMap<PageId, [u8; SIZE]>,
    calls: Calls,
    /// Pages whose recompute is scheduled (new function, data edge edited).
    forced: BTreeSet<PageId>,
    /// Source pages changed since the last wave.
    pending: BTreeSet<PageId>,
    /// Every page's value at the last wave.
    last: HashMap<PageId, [u8; SIZE]>,
    /// State after each LSN, for the replay checks.
    history: BTreeMap<u64, Snap>,
    /// Candidate edges of a hidden DAG, not yet added.
    candidates: Vec<DagEdge>,
}

impl World {
    fn new(store: Store, seed: u64, n: usize) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let r = store
            .commit(
                (0..n)
                    .map(|_| Op::CreatePage {
                        size: SIZE as u64,
                        location: PageLocation::Cpu,
                    })
                    .collect(),
            )
            .unwrap();
        let pages = r.created.clone();
        // A hidden random order makes the DAG.
        let candidates = dag::random_dag(&mut rng, &pages, 0.2, 6);
        let mut w = World {
            store,
            rng,
            pages: pages.clone(),
            edges: Vec::new(),
            funcs: BTreeMap::new(),
            sources: pages.iter().map(|&p| (p, [0; SIZE])).collect(),
            calls: Arc::default(),
            forced: BTreeSet::new(),
            pending: BTreeSet::new(),
            last: pages.iter().map(|&p| (p, [0; SIZE])).collect(),
            history: BTreeMap::new(),
            candidates,
        };
        w.record();
        // Derived pages: the ones some candidate data edge enters, mostly.
        let targets: BTreeSet<PageId> = w
            .candidates
            .iter()
            .filter(|e| e.2 == EdgeKind::Data)
            .map(|e| e.1)
            .collect();
        for p in targets {
            if w.rng.gen_bool(0.8) {
                let k = [Fk::Sum, Fk::Coarse, Fk::Pass, Fk::Xor5a][w.rng.gen_range(0..4)];
                w.store.set_recompute(p, make_fn(k, &w.calls)).unwrap();
                w.funcs.insert(p, k);
                w.forced.insert(p);
                w.sources.remove(&p);
            }
        }
        w
    }

    fn record(&mut self) {
        self.history.insert(self.store.lsn(), snap(&self.store));
    }

    fn data_parents(&self, c: PageId) -> Vec<PageId> {
        dag::data_parents(&self.edges, c)
    }

    fn recompute_from_scratch(&self) -> HashMap<PageId, [u8; SIZE]> {
        dag::from_scratch(&self.pages, &self.edges, &self.funcs, &self.sources)
    }

    /// The pages whose function a wave must run (the model of the rules).
    fn expected_runs(&self, new: &HashMap<PageId, [u8; SIZE]>) -> BTreeMap<PageId, u64> {
        let changed = |q: &PageId| {
            if self.funcs.contains_key(q) {
                new[q] != self.last[q]
            } else {
                self.pending.contains(q)
            }
        };
        self.funcs
            .keys()
            .filter(|p| self.forced.contains(p) || self.data_parents(**p).iter().any(changed))
            .map(|&p| (p, 1))
            .collect()
    }

    fn take_calls(&self) -> BTreeMap<PageId, u64> {
        std::mem::take(&mut *self.calls.lock().unwrap())
            .into_iter()
            .collect()
    }

    /// Checks a wave just ran: values equal from scratch, calls equal the model.
    fn check_wave(&mut self, what: &str) {
        let new = self.recompute_from_scratch();
        let want = self.expected_runs(&new);
        assert_eq!(self.take_calls(), want, "{what}: calls");
        for &p in &self.pages {
            assert_eq!(
                self.store.read(p).unwrap(),
                new[&p].to_vec(),
                "{what}: {p} differs from scratch"
            );
        }
        self.last = new;
        self.pending.clear();
        self.forced.clear();
        self.record();
    }

    /// Checks a deferred commit: no function ran, sources are written, derived pages unchanged.
    fn check_deferred(&mut self, what: &str) {
        assert!(
            self.take_calls().is_empty(),
            "{what}: a deferred commit ran a function"
        );
        for &p in &self.pages {
            let want = match self.funcs.get(&p) {
                Some(_) => self.last[&p],
                None => self.sources[&p],
            };
            assert_eq!(self.store.read(p).unwrap(), want.to_vec(), "{what}: {p}");
        }
        self.record();
    }

    /// Random deltas to distinct source pages (each changes its page).
    fn random_deltas(&mut self) -> Vec<Delta> {
        let srcs: Vec<PageId> = self.sources.keys().copied().collect();
        let mut chosen = BTreeSet::new();
        for _ in 0..self.rng.gen_range(1..=4) {
            chosen.insert(srcs[self.rng.gen_range(0..srcs.len())]);
        }
        let mut out = Vec::new();
        for p in chosen {
            let mut v = self.sources[&p];
            let j = self.rng.gen_range(0..SIZE);
            v[j] = v[j].wrapping_add(self.rng.gen_range(1..=255));
            self.sources.insert(p, v);
            self.pending.insert(p);
            out.push(Delta::dense(p, j as u64, vec![v[j]]));
        }
        out
    }

    /// Random graph edits that keep the test's graph acyclic: add candidates,
    /// remove and re-add existing edges. Updates the model; returns the ops.
    fn random_edits(&mut self) -> Vec<Op> {
        let mut ops = Vec::new();
        for _ in 0..self.rng.gen_range(1..=3) {
            let remove = !self.edges.is_empty() && self.rng.gen_bool(0.3);
            let (_, b, k) = if remove {
                let i = self.rng.gen_range(0..self.edges.len());
                let e = self.edges.remove(i);
                self.candidates.push(e);
                ops.push(Op::RemoveEdge {
                    parent: e.0,
                    child: e.1,
                    kind: e.2,
                });
                e
            } else if let Some(e) = self.candidates.pop() {
                let weight = self
                    .rng
                    .gen_bool(0.3)
                    .then(|| EdgeWeight::Scalar(self.rng.gen_range(-4.0..4.0)));
                ops.push(Op::AddEdge {
                    parent: e.0,
                    child: e.1,
                    kind: e.2,
                    weight,
                });
                self.edges.push(e);
                e
            } else {
                continue;
            };
            if k == EdgeKind::Data {
                self.forced.insert(b);
            }
        }
        ops
    }

    /// One random step; checks afterwards.
    fn step(&mut self, i: usize) {
        match self.store.mode() {
            PropagationMode::Immediate => {
                let mut ops: Vec<Op> = Vec::new();
                if self.rng.gen_bool(0.25) {
                    ops.extend(self.random_edits());
                }
                if ops.is_empty() || self.rng.gen_bool(0.5) {
                    ops.extend(self.random_deltas().into_iter().map(Op::Delta));
                }
                self.store.commit(ops).unwrap();
                self.check_wave(&format!("immediate commit {i}"));
            }
            PropagationMode::Deferred => match self.rng.gen_range(0..6) {
                0 => {
                    let d = self.random_deltas();
                    self.store.batch_route_deltas(d).unwrap();
                    self.check_wave(&format!("batch route {i}"));
                }
                1 => {
                    self.store.propagate().unwrap();
                    self.check_wave(&format!("propagate {i}"));
                }
                2 => {
                    let ops = self.random_edits();
                    if !ops.is_empty() {
                        self.store.commit(ops).unwrap();
                    }
                    self.check_deferred(&format!("deferred edit {i}"));
                }
                _ => {
                    let d = self.random_deltas();
                    self.store
                        .commit(d.into_iter().map(Op::Delta).collect())
                        .unwrap();
                    self.check_deferred(&format!("deferred commit {i}"));
                }
            },
        }
    }

    /// Builds the graph (edits mixed with deltas) and runs `commits` random steps.
    fn run(&mut self, commits: usize) {
        while !self.candidates.is_empty() {
            let mut ops = self.random_edits();
            if self.rng.gen_bool(0.3) {
                ops.extend(self.random_deltas().into_iter().map(Op::Delta));
            }
            if ops.is_empty() {
                continue;
            }
            self.store.commit(ops).unwrap();
            self.check_wave("building the graph");
        }
        for i in 0..commits {
            self.step(i);
        }
    }

    fn reattach(&self) {
        for (&p, &k) in &self.funcs {
            self.store
                .reattach_recompute(p, make_fn(k, &self.calls))
                .unwrap();
        }
    }

    fn check_replay(&self, every: usize) {
        let lsns: Vec<u64> = self.history.keys().copied().collect();
        for (i, &lsn) in lsns.iter().enumerate() {
            if i % every != 0 && i + 1 != lsns.len() {
                continue;
            }
            let past = self.store.state_at(Target::Lsn(lsn)).unwrap();
            let got = Snap {
                pages: past
                    .page_ids()
                    .into_iter()
                    .map(|p| {
                        let pg = past.page(p).unwrap();
                        (p, pg.bytes().to_vec(), pg.epoch())
                    })
                    .collect(),
                edges: past.graph().edges(),
                topo: past.graph().topo_order(),
            };
            assert_eq!(got, self.history[&lsn], "state_at({lsn})");
        }
    }
}

fn buffered() -> StoreOptions {
    StoreOptions {
        durability: Durability::Buffered {
            max_delay: Duration::from_millis(20),
        },
        ..StoreOptions::default()
    }
}

#[test]
fn every_wave_on_a_durable_store_equals_from_scratch_and_runs_each_affected_page_once() {
    let n = env("MMSB_PROP_PAGES", 40);
    let commits = env("MMSB_PROP_COMMITS", 60);
    for seed in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), buffered()).unwrap();
        let mut w = World::new(store, seed, n);
        w.run(commits);
        w.store.set_mode(PropagationMode::Deferred);
        for i in 0..commits {
            w.step(commits + i);
        }
        w.store.propagate().unwrap();
        w.check_wave("final propagate");
        let st = w.store.propagation_stats();
        assert!(
            st.waves > 0 && st.recomputes > 0 && st.derived_deltas > 0,
            "{st:?}"
        );
    }
}

#[test]
fn replay_to_any_lsn_gives_that_lsns_pages_and_graph() {
    let n = env("MMSB_PROP_PAGES", 40);
    let commits = env("MMSB_PROP_COMMITS", 60);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), buffered()).unwrap();
    let mut w = World::new(store, 7, n);
    w.run(commits / 2);
    w.store.checkpoint().unwrap();
    w.store.set_mode(PropagationMode::Deferred);
    for i in 0..commits / 2 {
        w.step(i);
    }
    w.store.propagate().unwrap();
    w.check_wave("final propagate");
    w.check_replay(3);
    // Derived deltas are in the log, in the commit that caused them, with provenance.
    let mut derived = 0;
    for &p in w.funcs.keys() {
        for h in w.store.page_history(p, 1, w.store.lsn()).unwrap() {
            assert!(h.delta.source.starts_with("derived:"), "{}", h.delta.source);
            assert!(h
                .delta
                .intent
                .as_deref()
                .unwrap_or("")
                .contains("propagation"));
            derived += 1;
        }
    }
    assert!(derived > 0);
}

#[test]
fn reopen_restores_graph_and_derived_pages_byte_exactly_without_recomputing() {
    let n = env("MMSB_PROP_PAGES", 40);
    let commits = env("MMSB_PROP_COMMITS", 60);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), buffered()).unwrap();
    let mut w = World::new(store, 11, n);
    w.run(commits / 2);
    w.store.checkpoint().unwrap();
    for i in 0..commits / 2 {
        w.step(i);
    }
    let before = snap(&w.store);
    let lsn = w.store.lsn();
    let old = std::mem::replace(&mut w.store, Store::in_memory());
    old.close().unwrap();
    w.store = Store::open(dir.path(), buffered()).unwrap();
    assert_eq!(w.store.lsn(), lsn);
    assert_eq!(snap(&w.store), before, "state after reopen");
    assert!(w.take_calls().is_empty(), "reopening ran a function");
    assert!(w.store.recovery_report().checkpoint.is_some());
    // Functions come back by re-attaching; that alone runs nothing.
    w.reattach();
    w.store.propagate().unwrap();
    assert!(
        w.take_calls().is_empty(),
        "re-attaching scheduled a recompute"
    );
    for i in 0..commits / 2 {
        w.step(i);
    }
}

#[test]
fn power_loss_restores_graph_and_derived_pages_without_recomputing() {
    let n = env("MMSB_PROP_PAGES", 40);
    let commits = env("MMSB_PROP_COMMITS", 60);
    let fs = FaultFs::new();
    let open = || {
        Store::open_with_vfs(
            Arc::new(fs.clone()),
            Path::new("/db"),
            StoreOptions {
                segment_bytes: 4096,
                ..StoreOptions::default()
            },
        )
        .unwrap()
    };
    let mut w = World::new(open(), 5, n);
    for round in 0..3 {
        if round == 0 {
            w.run(commits / 3);
        } else {
            for i in 0..commits / 3 {
                w.step(i);
            }
        }
        if round == 1 {
            w.store.checkpoint().unwrap();
        }
        // Every commit so far was acknowledged under immediate durability.
        let before = snap(&w.store);
        fs.crash();
        let old = std::mem::replace(&mut w.store, Store::in_memory());
        drop(old);
        w.store = open();
        assert_eq!(snap(&w.store), before, "round {round}: after power loss");
        assert!(
            w.take_calls().is_empty(),
            "round {round}: recovery ran a function"
        );
        w.reattach();
    }
}

#[test]
fn a_commit_can_create_a_page_link_it_and_write_it_with_one_wave() {
    let s = Store::in_memory();
    let c = s
        .commit(vec![Op::CreatePage {
            size: SIZE as u64,
            location: PageLocation::Cpu,
        }])
        .unwrap()
        .created[0];
    let calls: Calls = Arc::default();
    s.set_recompute(c, make_fn(Fk::Xor5a, &calls)).unwrap();
    // The new page gets id c + 1; the commit creates it, links it to c and writes it.
    let n = PageId(c.0 + 1);
    let r = s
        .commit(vec![
            Op::CreatePage {
                size: SIZE as u64,
                location: PageLocation::Cpu,
            },
            Op::AddEdge {
                parent: n,
                child: c,
                kind: EdgeKind::Data,
                weight: None,
            },
            Op::Delta(Delta::dense(n, 0, vec![1, 2, 3])),
        ])
        .unwrap();
    assert_eq!(r.created, vec![n]);
    assert_eq!(r.propagation.recomputed, vec![c]);
    let want: Vec<u8> = eval(Fk::Xor5a, &[&[1, 2, 3, 0, 0, 0, 0, 0]]).to_vec();
    assert_eq!(s.read(c).unwrap(), want);
    assert_eq!(calls.lock().unwrap()[&c], 1);
    // Deleting the parent in a later commit recomputes c with no input.
    s.commit(vec![Op::DeletePage(n)]).unwrap();
    assert_eq!(s.read(c).unwrap(), eval(Fk::Xor5a, &[]).to_vec());
    assert!(s.edges().is_empty());
}

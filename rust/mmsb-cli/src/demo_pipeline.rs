//! The derived-page pipeline of `mmsb demo`.
//!
//! On the demo's durable store it builds a small dependency graph of numeric
//! pages (little-endian `f64` arrays) and keeps it up to date by propagation:
//!
//! ```text
//! sensor0..3 --data--> calibrated0..3 --data--> sum --data--> report --control--> dashboard
//! config -----data-------^            \--data--> max --data--^
//! config --compiler--> plan
//! ```
//!
//! `calibrated_i = clamp(sensor_i * gain_i + offset_i, 0, 100)` (gain and
//! offset from `config`; the clamp makes cut-offs happen), `sum` and `max` are
//! elementwise over the four calibrated pages, and `report` reads both — a
//! diamond, so a glitch (a report seeing a new `max` with an old `sum`) would
//! be visible: in a consistent state `sum >= max` everywhere, and the report's
//! function counts every element where that fails. `dashboard` and `plan` are
//! written by the "application": a control edge marks the dashboard stale when
//! the report changes, a compiler edge invalidates the plan (and notifies a
//! subscriber) when the config changes.
//!
//! After every wave the demo checks, against its own reference model (plain
//! `f64` vectors, every derived page recomputed from scratch), that every
//! derived page is byte-exact, that exactly the pages whose inputs changed ran
//! (counted by the functions themselves, once each), and that the marks and
//! events follow. [`Pipeline::snapshot`] and [`Pipeline::check_reopened`]
//! prove the round trip through a checkpoint and a reopen: the graph and the
//! pages come back exactly and no function ran.

use mmsb_core::dependency_graph::GraphParts;
use mmsb_core::{
    CommitReceipt, Delta, EdgeKind, Error, Event, EventKind, Op, PageId, PageLocation,
    PropagationMode, RecomputeFn, RecomputeInputs, Store,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Sensor pages (and calibrated pages).
const SENSORS: usize = 4;
/// Readings per sensor page (`f64`, so 4 KiB pages).
const READINGS: usize = 512;
/// The calibrated range.
const LO: f64 = 0.0;
const HI: f64 = 100.0;
/// Readings 0..SATURATED of sensor 1 start far above the calibrated range.
const SATURATED: usize = 8;
/// Bytes of the report: total, peak, alarms (elements at `HI`), spare.
const REPORT_F64S: usize = 4;

fn decode(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            f64::from_le_bytes(a)
        })
        .collect()
}

fn encode(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn calibrate(sensor: &[f64], gain: f64, offset: f64) -> Vec<f64> {
    sensor
        .iter()
        .map(|x| (x * gain + offset).clamp(LO, HI))
        .collect()
}

fn elementwise(pages: &[Vec<f64>], f: fn(f64, f64) -> f64) -> Vec<f64> {
    (0..READINGS)
        .map(|j| pages.iter().skip(1).fold(pages[0][j], |a, p| f(a, p[j])))
        .collect()
}

fn report_of(sum: &[f64], max: &[f64]) -> Vec<f64> {
    let total: f64 = sum.iter().sum();
    let peak = max.iter().copied().fold(LO, f64::max);
    let alarms = max.iter().filter(|&&m| m >= HI).count() as f64;
    let mut r = vec![total, peak, alarms];
    r.resize(REPORT_F64S, 0.0);
    r
}

/// Every derived page, from scratch: calibrated pages, sum, max, report.
#[derive(Clone, PartialEq)]
struct Derived {
    cal: Vec<Vec<u8>>,
    sum: Vec<u8>,
    max: Vec<u8>,
    report: Vec<u8>,
}

fn from_scratch(sensors: &[Vec<f64>], config: &[f64]) -> Derived {
    let cal: Vec<Vec<f64>> = (0..SENSORS)
        .map(|i| calibrate(&sensors[i], config[2 * i], config[2 * i + 1]))
        .collect();
    let sum = elementwise(&cal, |a, b| a + b);
    let max = elementwise(&cal, f64::max);
    Derived {
        cal: cal.iter().map(|c| encode(c)).collect(),
        sum: encode(&sum),
        max: encode(&max),
        report: encode(&report_of(&sum, &max)),
    }
}

/// Checks that a function got exactly the parents it was built for.
fn expect_parents(inp: &RecomputeInputs<'_>, want: &[PageId]) -> mmsb_core::Result<()> {
    if inp.parents != want || inp.inputs.len() != want.len() {
        return Err(Error::invalid(format!(
            "{}: expected parents {}, got {}",
            inp.page,
            pages(want),
            pages(inp.parents)
        )));
    }
    Ok(())
}

fn write_out(out: &mut [u8], v: &[f64]) -> mmsb_core::Result<()> {
    let bytes = encode(v);
    if bytes.len() != out.len() {
        return Err(Error::invalid("derived page has the wrong size"));
    }
    out.copy_from_slice(&bytes);
    Ok(())
}

/// The pipeline's pages and the demo's reference model of them.
pub struct Pipeline {
    sensors: Vec<PageId>,
    config: PageId,
    cal: Vec<PageId>,
    sum: PageId,
    max: PageId,
    report: PageId,
    dashboard: PageId,
    plan: PageId,
    /// Reference inputs.
    m_sensors: Vec<Vec<f64>>,
    m_config: Vec<f64>,
    /// The derived pages as of the last wave (what the store must hold).
    m_derived: Derived,
    m_dashboard_stale: bool,
    m_plan_invalid: bool,
    m_invalidations: u64,
    /// Calls of any recompute function (counted by the functions).
    calls: Arc<AtomicU64>,
    /// Report calls that saw `sum < max` somewhere (a glitch).
    glitches: Arc<AtomicU64>,
    /// Invalidated events seen by the subscriber.
    invalidations: Arc<AtomicU64>,
    rng: StdRng,
    waves: usize,
}

/// What a commit changed, for the model: which sensors, whether the config,
/// and whether every derived page was forced to run (functions just set).
#[derive(Clone, Copy)]
struct Change<'a> {
    sensors: &'a [usize],
    config: bool,
    forced: bool,
}

impl Change<'_> {
    const NONE: Change<'static> = Change {
        sensors: &[],
        config: false,
        forced: false,
    };

    fn sensors(sensors: &[usize]) -> Change<'_> {
        Change {
            sensors,
            config: false,
            forced: false,
        }
    }
}

const ALL_SENSORS: [usize; SENSORS] = [0, 1, 2, 3];

/// What the round trip compares: the graph and every pipeline page's bytes.
pub struct Snapshot {
    graph: GraphParts,
    pages: Vec<Vec<u8>>,
    calls: u64,
}

/// `page#1, page#2`.
fn pages<'a>(ids: impl IntoIterator<Item = &'a PageId>) -> String {
    let v: Vec<String> = ids.into_iter().map(|p| p.to_string()).collect();
    format!("[{}]", v.join(", "))
}

fn err(e: Error) -> String {
    e.to_string()
}

impl Pipeline {
    /// Creates the pages, registers the functions, and builds the graph and
    /// the initial data in one commit (the first wave).
    pub fn build(store: &Store, seed: u64) -> Result<Pipeline, String> {
        let sizes: Vec<u64> = std::iter::repeat_n((READINGS * 8) as u64, SENSORS)
            .chain([2 * SENSORS as u64 * 8]) // config
            .chain(std::iter::repeat_n((READINGS * 8) as u64, SENSORS + 2)) // cal, sum, max
            .chain([REPORT_F64S as u64 * 8; 2]) // report, dashboard
            .chain([2 * SENSORS as u64 * 8]) // plan
            .collect();
        let ids = store
            .commit(
                sizes
                    .iter()
                    .map(|&size| Op::CreatePage {
                        size,
                        location: PageLocation::Cpu,
                    })
                    .collect(),
            )
            .map_err(err)?
            .created;
        let mut it = ids.into_iter();
        let mut take = |n: usize| -> Vec<PageId> { it.by_ref().take(n).collect() };
        let sensors = take(SENSORS);
        let config = take(1)[0];
        let cal = take(SENSORS);
        let (sum, max, report, dashboard, plan) = match take(5)[..] {
            [a, b, c, d, e] => (a, b, c, d, e),
            _ => return Err("the store created fewer pages than asked".into()),
        };
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5049_5045); // "PIPE"
        let mut m_sensors: Vec<Vec<f64>> = (0..SENSORS)
            .map(|_| (0..READINGS).map(|_| rng.gen_range(0.0..50.0)).collect())
            .collect();
        m_sensors[1][..SATURATED].fill(1000.0);
        let m_config: Vec<f64> = (0..SENSORS)
            .flat_map(|_| [rng.gen_range(1.0..2.0), rng.gen_range(0.0..10.0)])
            .collect();
        let mut p = Pipeline {
            sensors,
            config,
            cal,
            sum,
            max,
            report,
            dashboard,
            plan,
            m_derived: from_scratch(&vec![vec![0.0; READINGS]; SENSORS], &[0.0; 2 * SENSORS]),
            m_sensors,
            m_config,
            m_dashboard_stale: false,
            m_plan_invalid: false,
            m_invalidations: 0,
            calls: Arc::new(AtomicU64::new(0)),
            glitches: Arc::new(AtomicU64::new(0)),
            invalidations: Arc::new(AtomicU64::new(0)),
            rng,
            waves: 0,
        };
        // (From scratch, all-zero inputs and config give all-zero derived
        // pages: the model starts equal to the freshly created pages.)
        p.attach(store, false)?;
        println!("  derived pages: sensor0..3 + config -> calibrated0..3 -> sum, max -> report (a diamond)");
        println!("    report -control-> dashboard (stale mark), config -compiler-> plan (invalidation event)");
        let mut ops: Vec<Op> = (0..SENSORS)
            .map(|i| Op::Delta(p.sensor_delta(i, 0, READINGS)))
            .collect();
        ops.push(Op::Delta(
            Delta::dense(p.config, 0, encode(&p.m_config)).with_source("demo"),
        ));
        let data = |parent, child| Op::AddEdge {
            parent,
            child,
            kind: EdgeKind::Data,
            weight: None,
        };
        for i in 0..SENSORS {
            // Edge order is input order: sensor first, then config.
            ops.push(data(p.sensors[i], p.cal[i]));
            ops.push(data(p.config, p.cal[i]));
        }
        for &agg in &[p.sum, p.max] {
            for i in 0..SENSORS {
                ops.push(data(p.cal[i], agg));
            }
            ops.push(data(agg, p.report));
        }
        ops.push(Op::AddEdge {
            parent: p.report,
            child: p.dashboard,
            kind: EdgeKind::Control,
            weight: None,
        });
        ops.push(Op::AddEdge {
            parent: p.config,
            child: p.plan,
            kind: EdgeKind::Compiler,
            weight: None,
        });
        let before = p.calls();
        let r = store.commit(ops).map_err(err)?;
        let change = Change {
            sensors: &ALL_SENSORS,
            config: true,
            forced: true,
        };
        p.check_wave(store, "build (graph + data)", &r, change, before)?;
        // The application reacts to its marks: refresh the dashboard from the
        // report, recompile the plan from the config.
        p.refresh(store)?;
        Ok(p)
    }

    /// Registers the recompute functions (`reattach`: without scheduling a
    /// recompute, as after a reopen) and the invalidation subscriber.
    pub fn attach(&self, store: &Store, reattach: bool) -> Result<(), String> {
        let mut fns: Vec<(PageId, RecomputeFn)> = Vec::new();
        for i in 0..SENSORS {
            let (calls, parents) = (self.calls.clone(), [self.sensors[i], self.config]);
            fns.push((
                self.cal[i],
                RecomputeFn::rust(move |inp, out| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    expect_parents(inp, &parents)?;
                    let cfg = decode(inp.inputs[1]);
                    let (gain, offset) = match (cfg.get(2 * i), cfg.get(2 * i + 1)) {
                        (Some(&g), Some(&o)) => (g, o),
                        _ => return Err(Error::invalid("config page too short")),
                    };
                    write_out(out, &calibrate(&decode(inp.inputs[0]), gain, offset))
                }),
            ));
        }
        for (page, op) in [
            (self.sum, (|a, b| a + b) as fn(f64, f64) -> f64),
            (self.max, f64::max),
        ] {
            let (calls, parents) = (self.calls.clone(), self.cal.clone());
            fns.push((
                page,
                RecomputeFn::rust(move |inp, out| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    expect_parents(inp, &parents)?;
                    let cal: Vec<Vec<f64>> = inp.inputs.iter().map(|b| decode(b)).collect();
                    if cal.iter().any(|c| c.len() != READINGS) {
                        return Err(Error::invalid("calibrated page has the wrong size"));
                    }
                    write_out(out, &elementwise(&cal, op))
                }),
            ));
        }
        let (calls, glitches, parents) = (
            self.calls.clone(),
            self.glitches.clone(),
            [self.sum, self.max],
        );
        fns.push((
            self.report,
            RecomputeFn::rust(move |inp, out| {
                calls.fetch_add(1, Ordering::Relaxed);
                expect_parents(inp, &parents)?;
                let (sum, max) = (decode(inp.inputs[0]), decode(inp.inputs[1]));
                if sum.iter().zip(&max).any(|(s, m)| s < m) {
                    glitches.fetch_add(1, Ordering::Relaxed);
                }
                write_out(out, &report_of(&sum, &max))
            }),
        ));
        for (page, f) in fns {
            if reattach {
                store.reattach_recompute(page, f).map_err(err)?;
            } else {
                store.set_recompute(page, f).map_err(err)?;
            }
        }
        let seen = self.invalidations.clone();
        let plan = self.plan;
        store.subscribe(EventKind::Invalidated, move |e| {
            if matches!(e, Event::Invalidated { page, .. } if *page == plan) {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(())
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// A delta writing the model's readings `start..start+n` of sensor `i`.
    fn sensor_delta(&self, i: usize, start: usize, n: usize) -> Delta {
        let s = &self.m_sensors[i][start..start + n];
        Delta::dense(self.sensors[i], (start * 8) as u64, encode(s)).with_source("demo")
    }

    /// New random readings for a random range of a random sensor (above the
    /// saturated ones), in the model and as a delta.
    fn random_sensor_delta(&mut self) -> (usize, Delta) {
        let i = self.rng.gen_range(0..SENSORS);
        let n = self.rng.gen_range(1..=32);
        let start = self.rng.gen_range(SATURATED..=READINGS - n);
        for x in &mut self.m_sensors[i][start..start + n] {
            *x = self.rng.gen_range(0.0..50.0);
        }
        (i, self.sensor_delta(i, start, n))
    }

    /// The application writes the dashboard (from the report) and the plan
    /// (from the config): both marks clear.
    fn refresh(&mut self, store: &Store) -> Result<(), String> {
        let before = self.calls();
        let r = store
            .commit(vec![
                Op::Delta(Delta::dense(
                    self.dashboard,
                    0,
                    self.m_derived.report.clone(),
                )),
                Op::Delta(Delta::dense(self.plan, 0, encode(&self.m_config))),
            ])
            .map_err(err)?;
        self.m_dashboard_stale = false;
        self.m_plan_invalid = false;
        self.check_wave(store, "", &r, Change::NONE, before)?;
        println!(
            "  application: dashboard refreshed, plan recompiled (LSN {}): both marks cleared",
            r.lsn
        );
        Ok(())
    }

    /// Immediate waves (one sensor, a cut-off, a config change), then a
    /// deferred batch with one `propagate`.
    pub fn run_waves(&mut self, store: &Store) -> Result<(), String> {
        // One sensor: a random range of readings.
        let (i, d) = self.random_sensor_delta();
        let before = self.calls();
        let r = store.commit(vec![Op::Delta(d)]).map_err(err)?;
        let name = format!("sensor {i} update");
        self.check_wave(store, &name, &r, Change::sensors(&[i]), before)?;
        // Saturated readings move but stay above the range: calibrated1 is
        // recomputed and cut off, nothing below it runs.
        self.m_sensors[1][..SATURATED].fill(2000.0);
        let d = Delta::dense(self.sensors[1], 0, encode(&self.m_sensors[1][..SATURATED]));
        let before = self.calls();
        let r = store.commit(vec![Op::Delta(d)]).map_err(err)?;
        self.check_wave(
            store,
            "saturated sensor 1",
            &r,
            Change::sensors(&[1]),
            before,
        )?;
        // Config change: every calibrated page reruns, the plan is invalidated.
        for g in self.m_config.iter_mut().step_by(2) {
            *g *= 1.25;
        }
        let d = Delta::dense(self.config, 0, encode(&self.m_config));
        let before = self.calls();
        let r = store.commit(vec![Op::Delta(d)]).map_err(err)?;
        let change = Change {
            sensors: &[],
            config: true,
            forced: false,
        };
        self.check_wave(store, "config change", &r, change, before)?;
        self.refresh(store)?;
        // Deferred: commits log their inputs only; one propagate runs one wave.
        store.set_mode(PropagationMode::Deferred);
        let before = self.calls();
        let mut touched = BTreeSet::new();
        let commits = 6;
        for _ in 0..commits {
            let ops = (0..2)
                .map(|_| {
                    let (i, d) = self.random_sensor_delta();
                    touched.insert(i);
                    Op::Delta(d)
                })
                .collect();
            let r = store.commit(ops).map_err(err)?;
            if !r.propagation.recomputed.is_empty() || r.propagation.derived_deltas != 0 {
                return Err("a deferred commit ran a wave".into());
            }
            // The derived pages lag their inputs until the wave.
            self.check_derived(store, &self.m_derived)?;
        }
        let dirty: BTreeSet<PageId> = store.dirty_pages().into_iter().collect();
        let want: BTreeSet<PageId> = touched.iter().map(|&i| self.sensors[i]).collect();
        if dirty != want || self.calls() != before {
            return Err(format!(
                "deferred commits: dirty pages {}, expected {}; {} function calls",
                pages(&dirty),
                pages(&want),
                self.calls() - before
            ));
        }
        println!(
            "  deferred: {commits} commits logged inputs only ({} sensor pages dirty, derived pages lag, 0 function calls)",
            dirty.len()
        );
        let r = store.propagate().map_err(err)?;
        store.set_mode(PropagationMode::Immediate);
        let touched: Vec<usize> = touched.into_iter().collect();
        self.check_wave(
            store,
            "propagate (one wave)",
            &r,
            Change::sensors(&touched),
            before,
        )
    }

    fn check_derived(&self, store: &Store, want: &Derived) -> Result<(), String> {
        let pages = self.cal.iter().zip(&want.cal).chain([
            (&self.sum, &want.sum),
            (&self.max, &want.max),
            (&self.report, &want.report),
        ]);
        for (id, bytes) in pages {
            if &store.read(*id).map_err(err)? != bytes {
                return Err(format!(
                    "derived page {id} differs from the from-scratch recomputation"
                ));
            }
        }
        Ok(())
    }

    /// Checks one wave (the commit `r`, which made `change`) against the
    /// model; `calls_before`: the function-call counter before the commit.
    /// Prints a line when `name` is not empty.
    fn check_wave(
        &mut self,
        store: &Store,
        name: &str,
        r: &CommitReceipt,
        change: Change<'_>,
        calls_before: u64,
    ) -> Result<(), String> {
        let Change {
            sensors: inputs,
            config,
            forced,
        } = change;
        let fail = |what: String| format!("wave {name:?} (LSN {}): {what}", r.lsn);
        let new = from_scratch(&self.m_sensors, &self.m_config);
        let old = std::mem::replace(&mut self.m_derived, new.clone());
        // Which functions must run, exactly once each: a page runs when a data
        // parent changed in this wave (or when forced); it counts as changed
        // only if its bytes did (cutoff).
        let mut want_run = BTreeSet::new();
        let mut cal_changed = false;
        for i in 0..SENSORS {
            if forced || config || inputs.contains(&i) {
                want_run.insert(self.cal[i]);
                cal_changed |= new.cal[i] != old.cal[i];
            }
        }
        let (sum_changed, max_changed) = (new.sum != old.sum, new.max != old.max);
        if forced || cal_changed {
            want_run.extend([self.sum, self.max]);
        }
        let ran_agg = forced || cal_changed;
        if forced || (ran_agg && (sum_changed || max_changed)) {
            want_run.insert(self.report);
        }
        let report_changed = want_run.contains(&self.report) && new.report != old.report;
        let ran: BTreeSet<PageId> = r.propagation.recomputed.iter().copied().collect();
        if ran != want_run || r.propagation.recomputed.len() != ran.len() {
            return Err(fail(format!(
                "recomputed {}, the model expects {}",
                pages(&r.propagation.recomputed),
                pages(&want_run)
            )));
        }
        let calls = self.calls() - calls_before;
        if calls != ran.len() as u64 {
            return Err(fail(format!(
                "{calls} function calls for {} recomputed pages",
                ran.len()
            )));
        }
        self.check_derived(store, &new).map_err(fail)?;
        let glitches = self.glitches.load(Ordering::Relaxed);
        if glitches != 0 {
            return Err(fail(format!(
                "the report saw a mix of old and new inputs {glitches} times"
            )));
        }
        self.m_dashboard_stale |= report_changed;
        if config {
            self.m_plan_invalid = true;
            self.m_invalidations += 1;
        }
        let seen = self.invalidations.load(Ordering::Relaxed);
        if store.is_stale(self.dashboard) != self.m_dashboard_stale
            || store.is_invalidated(self.plan) != self.m_plan_invalid
            || seen != self.m_invalidations
        {
            return Err(fail(format!(
                "marks: dashboard stale {} (expected {}), plan invalidated {} (expected {}), {seen} invalidation events (expected {})",
                store.is_stale(self.dashboard),
                self.m_dashboard_stale,
                store.is_invalidated(self.plan),
                self.m_plan_invalid,
                self.m_invalidations
            )));
        }
        if name.is_empty() {
            return Ok(());
        }
        self.waves += 1;
        let changed: BTreeSet<PageId> = r.propagation.changed.iter().map(|c| c.0).collect();
        let cut = ran.iter().filter(|p| !changed.contains(p)).count();
        let mut marks = String::new();
        if report_changed {
            marks += "; dashboard stale";
        }
        if config {
            marks += &format!("; plan invalidated (#{seen})");
        }
        println!(
            "  wave {} {name:<20} LSN {}: {} recomputed, {cut} cut off, {} derived deltas logged{marks}",
            self.waves,
            r.lsn,
            ran.len(),
            r.propagation.derived_deltas,
        );
        Ok(())
    }

    /// Prints the summary line of the checks.
    pub fn summary(&self) {
        println!(
            "  verified after every wave: pages = from-scratch recomputation, each affected function ran once ({} calls), no glitch",
            self.calls()
        );
    }

    /// The graph and the pipeline's pages, before closing.
    pub fn snapshot(&self, store: &Store) -> Result<Snapshot, String> {
        Ok(Snapshot {
            graph: store.with_graph(|g| g.to_parts()),
            pages: self.page_bytes(store)?,
            calls: self.calls(),
        })
    }

    fn page_bytes(&self, store: &Store) -> Result<Vec<Vec<u8>>, String> {
        self.sensors
            .iter()
            .chain(&self.cal)
            .chain(&[
                self.config,
                self.sum,
                self.max,
                self.report,
                self.dashboard,
                self.plan,
            ])
            .map(|id| store.read(*id).map_err(err))
            .collect()
    }

    /// After a reopen: the graph and the pages equal the snapshot and no
    /// function ran; then re-attaches the functions (nothing reruns) and
    /// checks one more immediate wave.
    pub fn check_reopened(&mut self, store: &Store, before: &Snapshot) -> Result<(), String> {
        let graph = store.with_graph(|g| g.to_parts());
        if graph != before.graph {
            return Err("the reopened dependency graph differs from the graph before close".into());
        }
        if self.page_bytes(store)? != before.pages {
            return Err("a reopened pipeline page differs from its bytes before close".into());
        }
        if self.calls() != before.calls {
            return Err("a recompute function ran during recovery".into());
        }
        println!(
            "  round trip: graph ({} nodes, {} edges) and {} pipeline pages byte-exact; {} recompute calls on reopen",
            graph.nodes.len(),
            graph.edges.len(),
            before.pages.len(),
            self.calls() - before.calls
        );
        // Marks are not durable: a reopened store starts with none.
        self.m_dashboard_stale = false;
        self.m_plan_invalid = false;
        self.m_invalidations = self.invalidations.load(Ordering::Relaxed);
        self.attach(store, true)?;
        let r = store.propagate().map_err(err)?;
        if self.calls() != before.calls || !r.propagation.recomputed.is_empty() {
            return Err("re-attaching the functions reran them".into());
        }
        let (i, d) = self.random_sensor_delta();
        let calls = self.calls();
        let r = store.commit(vec![Op::Delta(d)]).map_err(err)?;
        let name = format!("re-attached, sensor {i}");
        self.check_wave(store, &name, &r, Change::sensors(&[i]), calls)
    }
}

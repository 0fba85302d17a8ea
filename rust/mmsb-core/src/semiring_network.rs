//! Semiring networks: numeric pages linked by weighted semiring edges.
//!
//! A [`SemiringNetwork`] over a semiring `S` holds *nodes* (numeric pages,
//! named by [`PageId`], each a vector of `S::Elem` of a fixed length) and
//! *semiring edges* `u -> v` with a [`Weight`] (scalar, diagonal or CSR
//! matrix). Every node `v` satisfies
//!
//! ```text
//! x_v = b_v ⊕ ⊕_{u -> v} (W_uv ⊗ x_u)
//! ```
//!
//! where `b_v` is the node's optional input vector (the zero vector if it has
//! none) and the parents are folded in the order their edges were added. The
//! edges form a DAG, kept by a [`DependencyGraph`] (an edge that would close a
//! cycle is rejected with the cycle named, and changes nothing).
//!
//! A **full wave** ([`SemiringNetwork::run_full`]) recomputes every node from
//! its inputs and parents; an **incremental wave**
//! ([`SemiringNetwork::update`], in [`crate::semiring_wave`]) applies input
//! and weight changes and moves only what they change, by the [`Strategy`] the
//! semiring's properties select. Both run a [`WavePlan`]. After a structural
//! change (a node or edge added or removed) the values are stale until the
//! next wave, which is then a full one.
//!
//! The network is self-contained: it owns the vectors, and a wave's
//! [`WaveReport`] names every entry whose value changed, which is exactly what
//! a page delta must carry ([`SemiringNetwork::changed_ranges`] gives the byte
//! ranges for a page laid out as little-endian elements from byte 0, the
//! [`NumericView`](crate::dtype::NumericView) layout). See
//! `docs/semiring-propagation.md` for how the propagation engine drives it.
//!
//! ```
//! use mmsb_core::semiring::MinPlus;
//! use mmsb_core::{Change, PageId, SemiringNetwork, Weight};
//! // Shortest distances: c = min(a + 3, b + 7).
//! let (a, b, c) = (PageId(1), PageId(2), PageId(3));
//! let mut net = SemiringNetwork::new(MinPlus::<i64>::new());
//! net.add_node(a, 1, Some(vec![0]))?;
//! net.add_node(b, 1, Some(vec![0]))?;
//! net.add_node(c, 1, None)?;
//! net.add_edge(a, c, Weight::Scalar(3))?;
//! net.add_edge(b, c, Weight::Scalar(7))?;
//! net.run_full()?;
//! assert_eq!(net.value(c)?, &[3]);
//! // a's distance grows: c is recomputed from both parents.
//! let report = net.update(&[Change::Input { page: a, index: 0, value: 10 }])?;
//! assert_eq!(net.value(c)?, &[7]);
//! assert_eq!(report.changed[&c], vec![0]);
//! # Ok::<(), mmsb_core::Error>(())
//! ```

use crate::dependency_graph::{DependencyGraph, EdgeKind};
use crate::error::{Error, Result};
use crate::page_id::PageId;
use crate::semiring::Semiring;
use crate::semiring_matrix::{apply_weight, mxv_reference, mxv_update, Csr, Weight};
use crate::semiring_plan::{Strategy, WaveOp, WavePlan};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A node: its length, optional input `b`, and current value `x`.
#[derive(Clone, Debug)]
pub(crate) struct Node<E> {
    pub(crate) len: usize,
    pub(crate) input: Option<Vec<E>>,
    pub(crate) value: Vec<E>,
}

/// An edge's weight, with the transpose of a matrix weight (the columns, which
/// an incremental wave follows to push a changed parent entry).
#[derive(Clone, Debug)]
pub(crate) struct EdgeData<E> {
    pub(crate) weight: Weight<E>,
    pub(crate) transpose: Option<Csr<E>>,
}

/// What a wave did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaveReport {
    /// `None` for a full wave, else the incremental strategy.
    pub strategy: Option<Strategy>,
    /// For each node with a changed value, the changed entries (increasing).
    pub changed: BTreeMap<PageId, Vec<usize>>,
    /// Commands in the wave's plan.
    pub commands: usize,
    /// Nodes whose settle step found pending work (incremental waves).
    pub nodes_settled: usize,
    /// Entries recomputed from all their parents (incremental waves).
    pub entries_recomputed: usize,
    /// Contributions pushed along edges (incremental waves).
    pub pushes: usize,
}

impl WaveReport {
    /// Total changed entries.
    pub fn changed_entries(&self) -> usize {
        self.changed.values().map(Vec::len).sum()
    }
}

/// Numeric pages linked by semiring edges. See the module docs.
#[derive(Clone, Debug)]
pub struct SemiringNetwork<S: Semiring> {
    pub(crate) s: S,
    pub(crate) graph: DependencyGraph,
    pub(crate) nodes: BTreeMap<PageId, Node<S::Elem>>,
    /// Shared (`Arc`): cloning a network copies node vectors, not weights;
    /// a weight change copies only its own edge if shared (`Arc::make_mut`).
    pub(crate) edges: BTreeMap<(PageId, PageId), Arc<EdgeData<S::Elem>>>,
    /// Values equal a full wave of the current structure, inputs and weights.
    pub(crate) fresh: bool,
    pub(crate) strategy: Strategy,
    /// At most two vectors a full wave reuses (a node's previous value becomes
    /// the next node's buffer), so a steady-state wave allocates little.
    pub(crate) spare: Vec<Vec<S::Elem>>,
}

impl<S: Semiring> SemiringNetwork<S> {
    /// An empty network over `s`; its incremental strategy follows `s`'s
    /// properties ([`Strategy::for_properties`]).
    pub fn new(s: S) -> SemiringNetwork<S> {
        let strategy = Strategy::for_properties(s.properties());
        SemiringNetwork {
            s,
            graph: DependencyGraph::new(),
            nodes: BTreeMap::new(),
            edges: BTreeMap::new(),
            fresh: true,
            strategy,
            spare: Vec::new(),
        }
    }

    /// The semiring.
    pub fn semiring(&self) -> &S {
        &self.s
    }

    /// The incremental strategy in use.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Overrides the incremental strategy. [`Strategy::Recompute`] is correct
    /// for every semiring; [`Strategy::Improve`] needs an idempotent `⊕` and
    /// [`Strategy::Subtract`] a subtraction (else `Unsupported`).
    pub fn set_strategy(&mut self, strategy: Strategy) -> Result<()> {
        let p = self.s.properties();
        let ok = match strategy {
            Strategy::Recompute => true,
            Strategy::Improve => p.idempotent_add,
            Strategy::Subtract => p.has_subtraction,
        };
        if !ok {
            return Err(Error::new(
                crate::error::ErrorCode::Unsupported,
                format!(
                    "strategy {} needs a semiring with {}",
                    strategy.name(),
                    if strategy == Strategy::Improve {
                        "an idempotent add"
                    } else {
                        "subtraction"
                    }
                ),
            ));
        }
        self.strategy = strategy;
        Ok(())
    }

    /// Adds a node of `len` entries with an optional input vector (of `len`
    /// entries). Its value is stale until the next wave.
    pub fn add_node(
        &mut self,
        page: PageId,
        len: usize,
        input: Option<Vec<S::Elem>>,
    ) -> Result<()> {
        if self.nodes.contains_key(&page) {
            return Err(Error::invalid(format!("{page} is already a semiring node")));
        }
        if let Some(b) = &input {
            if b.len() != len {
                return Err(Error::invalid(format!(
                    "the input of {page} has {} entries, not {len}",
                    b.len()
                )));
            }
        }
        self.graph.add_node(page);
        self.nodes.insert(
            page,
            Node {
                len,
                input,
                value: vec![self.s.zero(); len],
            },
        );
        self.fresh = false;
        Ok(())
    }

    /// Adds the semiring edge `parent -> child` with `weight` (whose shape must
    /// map the parent's length to the child's). `Cycle` if it would close a
    /// cycle; `InvalidArgument` for an unknown node, a wrong shape or a second
    /// edge between the pair. On error nothing changes.
    pub fn add_edge(
        &mut self,
        parent: PageId,
        child: PageId,
        weight: Weight<S::Elem>,
    ) -> Result<()> {
        let np = self.node(parent)?.len;
        let nc = self.node(child)?.len;
        weight.check_shape(np, nc)?;
        self.graph.add_edge(parent, child, EdgeKind::Data, None)?;
        let transpose = match &weight {
            Weight::Matrix(a) => Some(a.transpose()),
            _ => None,
        };
        self.edges
            .insert((parent, child), Arc::new(EdgeData { weight, transpose }));
        self.fresh = false;
        Ok(())
    }

    /// Removes the edge `parent -> child` and returns its weight.
    pub fn remove_edge(&mut self, parent: PageId, child: PageId) -> Result<Weight<S::Elem>> {
        let e = self
            .edges
            .remove(&(parent, child))
            .ok_or_else(|| Error::not_found(format!("no semiring edge {parent} -> {child}")))?;
        self.graph.remove_edge(parent, child, EdgeKind::Data)?;
        self.fresh = false;
        Ok(Arc::try_unwrap(e).map_or_else(|shared| shared.weight.clone(), |d| d.weight))
    }

    pub(crate) fn node(&self, page: PageId) -> Result<&Node<S::Elem>> {
        self.nodes
            .get(&page)
            .ok_or_else(|| Error::not_found(format!("{page} is not a semiring node")))
    }

    /// The node's current value.
    pub fn value(&self, page: PageId) -> Result<&[S::Elem]> {
        Ok(&self.node(page)?.value)
    }

    /// The node's input vector, if it has one.
    pub fn input(&self, page: PageId) -> Result<Option<&[S::Elem]>> {
        Ok(self.node(page)?.input.as_deref())
    }

    /// The node's length.
    pub fn len_of(&self, page: PageId) -> Result<usize> {
        Ok(self.node(page)?.len)
    }

    /// The weight of `parent -> child`, if that edge exists.
    pub fn weight(&self, parent: PageId, child: PageId) -> Option<&Weight<S::Elem>> {
        self.edges.get(&(parent, child)).map(|e| &e.weight)
    }

    /// The nodes in topological order.
    pub fn topo_order(&self) -> Vec<PageId> {
        self.graph.topo_order()
    }

    /// The parents of `page`, in edge order (the order of the fold).
    pub fn parents(&self, page: PageId) -> Vec<PageId> {
        self.graph.parents_of_kind(page, EdgeKind::Data)
    }

    /// Whether the values equal a full wave (false after a structural change
    /// until the next wave).
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// The plan of a full wave over every node.
    pub fn plan_full(&self) -> WavePlan {
        let all: BTreeSet<PageId> = self.nodes.keys().copied().collect();
        WavePlan::plan(&self.graph, &all, None)
    }

    /// Runs a full wave: every node recomputed from its input and parents.
    /// Matrix weights run the parallel mxv kernel on the current rayon pool.
    pub fn run_full(&mut self) -> Result<WaveReport> {
        let plan = self.plan_full();
        self.run_full_plan(&plan)
    }

    /// Runs a planned full wave (see [`WavePlan`]).
    pub fn run_full_plan(&mut self, plan: &WavePlan) -> Result<WaveReport> {
        if plan.strategy.is_some() {
            return Err(Error::invalid("run_full_plan needs a full-wave plan"));
        }
        let mut report = WaveReport {
            strategy: None,
            commands: plan.len(),
            ..WaveReport::default()
        };
        // The node being built: (page, its new value, whether the buffer
        // still awaits its first write — a node without an input lets its
        // first Accumulate overwrite instead of zero-filling first).
        let mut current: Option<(PageId, Vec<S::Elem>, bool)> = None;
        let mut skip = false;
        for (k, cmd) in plan.commands.iter().enumerate() {
            if std::mem::take(&mut skip) {
                continue;
            }
            if current.as_ref().is_some_and(|(p, _, _)| *p != cmd.node) {
                if let Some((p, v, blank)) = current.take() {
                    self.store_full(p, v, blank, &mut report)?;
                }
            }
            match cmd.op {
                WaveOp::Reset => {
                    // Fast paths that update the value in place and compare
                    // as they go (one pass instead of build, compare, swap).
                    let next = plan.commands.get(k + 1).filter(|c| c.node == cmd.node);
                    let after = plan.commands.get(k + 2).filter(|c| c.node == cmd.node);
                    if let (None, Some(_)) = (next, self.node(cmd.node)?.input.as_ref()) {
                        self.reset_source_in_place(cmd.node, &mut report)?;
                        continue;
                    }
                    if let (Some(WaveOp::Accumulate { parent }), None) = (next.map(|c| c.op), after)
                    {
                        if self.single_matrix_in_place(parent, cmd.node, &mut report)? {
                            skip = true;
                            continue;
                        }
                    }
                    let mut v = self.spare.pop().unwrap_or_default();
                    let n = self.node(cmd.node)?;
                    let blank = match &n.input {
                        Some(b) => {
                            v.clear();
                            v.extend_from_slice(b);
                            false
                        }
                        None => {
                            // Contents are stale until the first write.
                            v.resize(n.len, self.s.zero());
                            true
                        }
                    };
                    current = Some((cmd.node, v, blank));
                }
                WaveOp::Accumulate { parent } => {
                    let Some((_, y, blank)) = current.as_mut() else {
                        return Err(Error::invalid("an Accumulate command without its Reset"));
                    };
                    let e = self.edges.get(&(parent, cmd.node)).ok_or_else(|| {
                        Error::not_found(format!("no semiring edge {parent} -> {}", cmd.node))
                    })?;
                    let x = &self.node(parent)?.value;
                    apply_weight(&self.s, &e.weight, x, y, !*blank)?;
                    *blank = false;
                }
                WaveOp::Settle | WaveOp::Push { .. } => {
                    return Err(Error::invalid("an incremental command in a full-wave plan"))
                }
            }
        }
        if let Some((p, v, blank)) = current.take() {
            self.store_full(p, v, blank, &mut report)?;
        }
        self.fresh = true;
        Ok(report)
    }

    /// A node with an input and no parent: `x := b`, copying only the
    /// entries that differ and reporting them.
    fn reset_source_in_place(&mut self, page: PageId, report: &mut WaveReport) -> Result<()> {
        let node = self
            .nodes
            .get_mut(&page)
            .ok_or_else(|| Error::not_found(format!("{page} is not a semiring node")))?;
        let Some(b) = node.input.as_ref() else {
            return Ok(());
        };
        let mut changed = Vec::new();
        // Blocks of 64 are first compared branch-free (vectorised); only a
        // block that differs is walked entry by entry.
        const BLOCK: usize = 64;
        for (k, (xs, bs)) in node
            .value
            .chunks_mut(BLOCK)
            .zip(b.chunks(BLOCK))
            .enumerate()
        {
            let differs = xs.iter().zip(bs).fold(false, |d, (x, bi)| d | (x != bi));
            if !differs {
                continue;
            }
            for (i, (x, &bi)) in xs.iter_mut().zip(bs).enumerate() {
                if *x != bi {
                    *x = bi;
                    changed.push(k * BLOCK + i);
                }
            }
        }
        if !changed.is_empty() {
            report.changed.insert(page, changed);
        }
        Ok(())
    }

    /// A node without an input whose one parent edge is a matrix:
    /// `x := A ⊗ x_parent` in place, reporting the rows that changed. `false`
    /// (nothing done) if the edge is not a matrix.
    fn single_matrix_in_place(
        &mut self,
        parent: PageId,
        page: PageId,
        report: &mut WaveReport,
    ) -> Result<bool> {
        if self.node(page)?.input.is_some() {
            return Ok(false);
        }
        let Some(EdgeData {
            weight: Weight::Matrix(a),
            ..
        }) = self.edges.get(&(parent, page)).map(|e| &**e)
        else {
            return Ok(false);
        };
        let mut y = std::mem::take(
            &mut self
                .nodes
                .get_mut(&page)
                .ok_or_else(|| Error::not_found(format!("{page} is not a semiring node")))?
                .value,
        );
        let r = match self.nodes.get(&parent) {
            Some(p) => mxv_update(&self.s, a, &p.value, &mut y),
            None => Err(Error::not_found(format!("{parent} is not a semiring node"))),
        };
        if let Some(n) = self.nodes.get_mut(&page) {
            n.value = y;
        }
        let changed = r?;
        if !changed.is_empty() {
            report.changed.insert(page, changed);
        }
        Ok(true)
    }

    fn store_full(
        &mut self,
        page: PageId,
        mut v: Vec<S::Elem>,
        blank: bool,
        report: &mut WaveReport,
    ) -> Result<()> {
        if blank {
            // No input and no parent: the zero vector.
            let zero = self.s.zero();
            v.iter_mut().for_each(|e| *e = zero);
        }
        let node = self
            .nodes
            .get_mut(&page)
            .ok_or_else(|| Error::not_found(format!("{page} is not a semiring node")))?;
        let changed: Vec<usize> = node
            .value
            .iter()
            .zip(&v)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i)
            .collect();
        if !changed.is_empty() {
            report.changed.insert(page, changed);
        }
        let old = std::mem::replace(&mut node.value, v);
        if self.spare.len() < 2 {
            self.spare.push(old);
        }
        Ok(())
    }

    /// Every node's value computed from scratch, sequentially, with the
    /// reference kernels, without touching the network: the oracle the
    /// incremental tests compare against.
    pub fn from_scratch(&self) -> Result<BTreeMap<PageId, Vec<S::Elem>>> {
        let mut out: BTreeMap<PageId, Vec<S::Elem>> = BTreeMap::new();
        for v in self.graph.topo_order() {
            let n = self.node(v)?;
            let mut y = match &n.input {
                Some(b) => b.clone(),
                None => vec![self.s.zero(); n.len],
            };
            for u in self.parents(v) {
                let x = out
                    .get(&u)
                    .ok_or_else(|| Error::invalid(format!("{u} not computed before {v}")))?;
                let e = self
                    .edges
                    .get(&(u, v))
                    .ok_or_else(|| Error::not_found(format!("no semiring edge {u} -> {v}")))?;
                match &e.weight {
                    Weight::Scalar(w) => {
                        for (yi, &xi) in y.iter_mut().zip(x) {
                            *yi = self.s.add(*yi, self.s.mul(*w, xi));
                        }
                    }
                    Weight::Diagonal(d) => {
                        for ((yi, &xi), &di) in y.iter_mut().zip(x).zip(d) {
                            *yi = self.s.add(*yi, self.s.mul(di, xi));
                        }
                    }
                    Weight::Matrix(a) => mxv_reference(&self.s, a, x, &mut y, true)?,
                }
            }
            out.insert(v, y);
        }
        Ok(out)
    }

    /// The byte ranges (`offset`, `length`) of a page holding `page`'s value as
    /// little-endian elements from byte 0 that `report` says changed, adjacent
    /// entries merged: what a delta writing the wave's result must cover.
    pub fn changed_ranges(&self, report: &WaveReport, page: PageId) -> Vec<(u64, u64)> {
        let size = std::mem::size_of::<S::Elem>() as u64;
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &i in report.changed.get(&page).map(Vec::as_slice).unwrap_or(&[]) {
            let off = i as u64 * size;
            match out.last_mut() {
                Some((o, l)) if *o + *l == off => *l += size,
                _ => out.push((off, size)),
            }
        }
        out
    }
}

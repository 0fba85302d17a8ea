//! Incremental semiring waves: move only what an input or weight change moves.
//!
//! [`SemiringNetwork::update`] takes a batch of [`Change`]s (an input entry
//! `b_v[i]` or a weight entry of an edge set to a new value), checks them all,
//! then plans one wave over the changed nodes and their descendants
//! ([`WavePlan`], incremental) and runs it. Each node, in topological order,
//! *settles* its pending changes into `x_v` and *pushes* the entries that
//! changed (its frontier) to its children. How a change travels depends on the
//! [`Strategy`], which the network picks from the semiring's properties:
//!
//! * **Subtract** (`⊕` has an inverse, e.g. plus-times): a changed parent entry
//!   sends `W ⊗ Δx` with `Δx = x_new ⊖ x_old` (the difference of the values
//!   actually stored, so rounding never accumulates apart from the parents); an
//!   input change sends `b_new ⊖ b_old`; a weight change `A[i, j]: w -> w'`
//!   sends `w' ⊗ x_u[j] ⊖ w ⊗ x_u[j]`, applied after the parent's own push
//!   (which used the old weight), so the sum telescopes to the new value.
//!   A child adds (`⊕`) what it receives. Exact for integers (wrapping
//!   arithmetic is a ring); for floats each incremental step rounds, so after
//!   `k` waves an entry differs from a from-scratch wave by at most about
//!   `k · ε · Σ|terms|` (the tests use a relative tolerance of `1e-9` on `f64`
//!   and `1e-3` on `f32` against the magnitude of the terms).
//! * **Improve** (idempotent `⊕`: min, max, or): a parent entry that *improved*
//!   (`new ⊕ old = new`) sends the candidate `W ⊗ x_new`, and by distributivity
//!   the child's new value is `x_old ⊕ candidate`; an entry that got *worse*
//!   (min-plus distance grew, or-and true -> false) cannot be undone by `⊕`, so
//!   it marks the child entries it reaches *dirty*, and the child recomputes
//!   exactly those entries from all parents (`b_v[i] ⊕ ⊕_u row_i(W_uv) ⊗ x_u`,
//!   stopping early at the semiring's terminal value). Input and weight changes
//!   are classified the same way. Exact: `⊕` never rounds, and `⊗`'s rounding
//!   is monotone, so improvements stay improvements.
//! * **Recompute** (neither property; or forced by
//!   [`SemiringNetwork::set_strategy`]): every reached entry is dirty.
//!
//! A node whose value did not change pushes nothing (cutoff), so the wave
//! stops where the change dies out. The cost is proportional to the entries
//! changed and the edges they touch, not to the network's size: one changed
//! input entry of a node feeding an n x n CSR edge costs one column of the
//! matrix, where a full wave costs every stored entry.
//!
//! Changes are all validated before anything moves: a bad change leaves the
//! network unchanged. On a network whose values are stale (a structural change
//! since the last wave) `update` applies the changes and runs a full wave.

use crate::error::{Error, Result};
use crate::page_id::PageId;
use crate::semiring::Semiring;
use crate::semiring_matrix::{row_dot, Weight};
use crate::semiring_network::{SemiringNetwork, WaveReport};
use crate::semiring_plan::{Strategy, WaveOp, WavePlan};
use std::collections::{BTreeMap, BTreeSet};

/// One change an incremental wave applies.
#[derive(Clone, Debug, PartialEq)]
pub enum Change<E> {
    /// `b_page[index] := value` (a node without an input gets one, zero elsewhere).
    Input {
        /// The node.
        page: PageId,
        /// The entry.
        index: usize,
        /// The new input value.
        value: E,
    },
    /// The weight entry `(row, col)` of `parent -> child` := `value`: for a
    /// scalar weight `(0, 0)`; for a diagonal `(i, i)`; for a matrix a stored
    /// entry (the sparsity pattern is fixed; add an edge to change it).
    Weight {
        /// The edge's parent.
        parent: PageId,
        /// The edge's child.
        child: PageId,
        /// Row (child entry).
        row: usize,
        /// Column (parent entry).
        col: usize,
        /// The new weight value.
        value: E,
    },
}

/// Pending work of one node during a wave.
struct Pending<E> {
    inputs: Vec<(usize, E)>,
    weights: Vec<(PageId, usize, usize, E)>,
    delta: BTreeMap<usize, E>,
    improve: BTreeMap<usize, E>,
    dirty: BTreeSet<usize>,
}

impl<E> Default for Pending<E> {
    fn default() -> Self {
        Pending {
            inputs: Vec::new(),
            weights: Vec::new(),
            delta: BTreeMap::new(),
            improve: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }
}

impl<E> Pending<E> {
    fn is_empty(&self) -> bool {
        self.inputs.is_empty()
            && self.weights.is_empty()
            && self.delta.is_empty()
            && self.improve.is_empty()
            && self.dirty.is_empty()
    }
}

impl<S: Semiring> SemiringNetwork<S> {
    fn check_change(&self, c: &Change<S::Elem>) -> Result<()> {
        match c {
            Change::Input { page, index, .. } => {
                let n = self.node(*page)?;
                if *index >= n.len {
                    return Err(Error::invalid(format!(
                        "input entry {index} is outside {page} of {} entries",
                        n.len
                    )));
                }
            }
            Change::Weight {
                parent,
                child,
                row,
                col,
                ..
            } => {
                let e = self.edges.get(&(*parent, *child)).ok_or_else(|| {
                    Error::not_found(format!("no semiring edge {parent} -> {child}"))
                })?;
                let ok = match &e.weight {
                    Weight::Scalar(_) => *row == 0 && *col == 0,
                    Weight::Diagonal(d) => row == col && *row < d.len(),
                    Weight::Matrix(a) => a.position(*row, *col).is_some(),
                };
                if !ok {
                    return Err(Error::invalid(format!(
                        "({row}, {col}) is not an entry of the {} weight of {parent} -> {child}",
                        e.weight.kind_name()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Plans the incremental wave `changes` would run (without running it).
    pub fn plan_update(&self, changes: &[Change<S::Elem>]) -> Result<WavePlan> {
        let mut seeds = BTreeSet::new();
        for c in changes {
            self.check_change(c)?;
            seeds.insert(match c {
                Change::Input { page, .. } => *page,
                Change::Weight { child, .. } => *child,
            });
        }
        let mut region = self.graph.descendants(seeds.iter().copied());
        region.extend(seeds);
        Ok(WavePlan::plan(&self.graph, &region, Some(self.strategy)))
    }

    /// Applies `changes` and propagates them with one incremental wave (see the
    /// module docs). All changes are checked first; on error nothing changes.
    pub fn update(&mut self, changes: &[Change<S::Elem>]) -> Result<WaveReport> {
        let plan = self.plan_update(changes)?;
        if !self.fresh {
            for c in changes {
                self.set_directly(c)?;
            }
            return self.run_full();
        }
        let mut pending: BTreeMap<PageId, Pending<S::Elem>> = BTreeMap::new();
        for c in changes {
            match c {
                Change::Input { page, index, value } => pending
                    .entry(*page)
                    .or_default()
                    .inputs
                    .push((*index, *value)),
                Change::Weight {
                    parent,
                    child,
                    row,
                    col,
                    value,
                } => pending
                    .entry(*child)
                    .or_default()
                    .weights
                    .push((*parent, *row, *col, *value)),
            }
        }
        let mut report = WaveReport {
            strategy: Some(self.strategy),
            commands: plan.len(),
            ..WaveReport::default()
        };
        // Frontier of the node settled last: (entry, old, new).
        let mut frontier: Vec<(usize, S::Elem, S::Elem)> = Vec::new();
        for cmd in &plan.commands {
            match cmd.op {
                WaveOp::Settle => {
                    frontier.clear();
                    if let Some(p) = pending.remove(&cmd.node) {
                        if !p.is_empty() {
                            report.nodes_settled += 1;
                            self.settle(cmd.node, p, &mut frontier, &mut report)?;
                        }
                    }
                    if !frontier.is_empty() {
                        let mut idx: Vec<usize> = frontier.iter().map(|f| f.0).collect();
                        idx.sort_unstable();
                        report.changed.insert(cmd.node, idx);
                    }
                }
                WaveOp::Push { child } => {
                    if !frontier.is_empty() {
                        let p = pending.entry(child).or_default();
                        self.push(cmd.node, child, &frontier, p, &mut report)?;
                    }
                }
                WaveOp::Reset | WaveOp::Accumulate { .. } => {
                    return Err(Error::invalid("a full-wave command in an incremental plan"))
                }
            }
        }
        Ok(report)
    }

    /// Applies one change to the inputs or weights without propagating it.
    fn set_directly(&mut self, c: &Change<S::Elem>) -> Result<()> {
        match c {
            Change::Input { page, index, value } => {
                let zero = self.s.zero();
                let n = self
                    .nodes
                    .get_mut(page)
                    .ok_or_else(|| Error::not_found(format!("{page} is not a semiring node")))?;
                let len = n.len;
                let b = n.input.get_or_insert_with(|| vec![zero; len]);
                if let Some(slot) = b.get_mut(*index) {
                    *slot = *value;
                }
            }
            Change::Weight {
                parent,
                child,
                row,
                col,
                value,
            } => {
                self.set_weight_entry(*parent, *child, *row, *col, *value)?;
            }
        }
        Ok(())
    }

    /// Sets one weight entry (checked by `check_change`); returns the old value.
    fn set_weight_entry(
        &mut self,
        parent: PageId,
        child: PageId,
        row: usize,
        col: usize,
        value: S::Elem,
    ) -> Result<S::Elem> {
        let e = self
            .edges
            .get_mut(&(parent, child))
            .ok_or_else(|| Error::not_found(format!("no semiring edge {parent} -> {child}")))?;
        match &mut e.weight {
            Weight::Scalar(w) => Ok(std::mem::replace(w, value)),
            Weight::Diagonal(d) => d
                .get_mut(row)
                .map(|w| std::mem::replace(w, value))
                .ok_or_else(|| Error::invalid(format!("diagonal entry {row} out of range"))),
            Weight::Matrix(a) => {
                let old = a.set(row, col, value)?;
                if let Some(t) = e.transpose.as_mut() {
                    t.set(col, row, value)?;
                }
                Ok(old)
            }
        }
    }

    /// Folds `p` into `page`'s value; writes the changed entries to `frontier`.
    fn settle(
        &mut self,
        page: PageId,
        mut p: Pending<S::Elem>,
        frontier: &mut Vec<(usize, S::Elem, S::Elem)>,
        report: &mut WaveReport,
    ) -> Result<()> {
        let s = self.s.clone();
        let strategy = self.strategy;
        // 1. Input changes.
        if !p.inputs.is_empty() {
            let zero = s.zero();
            let n = self
                .nodes
                .get_mut(&page)
                .ok_or_else(|| Error::not_found(format!("{page} is not a semiring node")))?;
            let len = n.len;
            let b = n.input.get_or_insert_with(|| vec![zero; len]);
            let inputs = std::mem::take(&mut p.inputs);
            for (i, new) in inputs {
                let Some(slot) = b.get_mut(i) else { continue };
                let old = std::mem::replace(slot, new);
                classify(&s, strategy, &mut p, i, old, new);
            }
        }
        // 2. Weight changes on in-edges (the parents have pushed with the old weights).
        let weights = std::mem::take(&mut p.weights);
        for (parent, row, col, new) in weights {
            let old = self.set_weight_entry(parent, page, row, col, new)?;
            let x = &self.node(parent)?.value;
            let rows: Vec<usize> = match self.weight(parent, page) {
                Some(Weight::Scalar(_)) => (0..x.len()).collect(),
                _ => vec![row],
            };
            for i in rows {
                let xj = x.get(if rows_are_diagonal(self.weight(parent, page)) {
                    i
                } else {
                    col
                });
                let Some(&xj) = xj else { continue };
                let (t_old, t_new) = (s.mul(old, xj), s.mul(new, xj));
                classify(&s, strategy, &mut p, i, t_old, t_new);
            }
        }
        // 3. Dirty entries, recomputed from all parents (current values, new weights).
        let parents = if p.dirty.is_empty() {
            Vec::new()
        } else {
            self.parents(page)
        };
        let mut recomputed: Vec<(usize, S::Elem)> = Vec::with_capacity(p.dirty.len());
        for &i in &p.dirty {
            recomputed.push((i, self.recompute_entry(page, &parents, i)?));
        }
        report.entries_recomputed += recomputed.len();
        // 4. Write, collecting the frontier.
        let n = self
            .nodes
            .get_mut(&page)
            .ok_or_else(|| Error::not_found(format!("{page} is not a semiring node")))?;
        let x = &mut n.value;
        for (i, v) in recomputed {
            if let Some(slot) = x.get_mut(i) {
                let old = std::mem::replace(slot, v);
                if old != v {
                    frontier.push((i, old, v));
                }
            }
        }
        for (i, d) in p.delta {
            if let Some(slot) = x.get_mut(i) {
                let old = *slot;
                let v = s.add(old, d);
                *slot = v;
                if old != v {
                    frontier.push((i, old, v));
                }
            }
        }
        for (i, c) in p.improve {
            if p.dirty.contains(&i) {
                continue;
            }
            if let Some(slot) = x.get_mut(i) {
                let old = *slot;
                let v = s.add(old, c);
                *slot = v;
                if old != v {
                    frontier.push((i, old, v));
                }
            }
        }
        Ok(())
    }

    /// `b_v[i] ⊕ ⊕_u (row i of W_uv) ⊗ x_u`, stopping at the terminal value.
    fn recompute_entry(&self, page: PageId, parents: &[PageId], i: usize) -> Result<S::Elem> {
        let s = &self.s;
        let n = self.node(page)?;
        let mut acc = n
            .input
            .as_ref()
            .and_then(|b| b.get(i).copied())
            .unwrap_or_else(|| s.zero());
        for u in parents {
            if s.is_terminal(acc) {
                break;
            }
            let e = self
                .edges
                .get(&(*u, page))
                .ok_or_else(|| Error::not_found(format!("no semiring edge {u} -> {page}")))?;
            let x = &self.node(*u)?.value;
            acc = match &e.weight {
                Weight::Scalar(w) => x.get(i).map_or(acc, |&xi| s.add(acc, s.mul(*w, xi))),
                Weight::Diagonal(d) => match (d.get(i), x.get(i)) {
                    (Some(&di), Some(&xi)) => s.add(acc, s.mul(di, xi)),
                    _ => acc,
                },
                Weight::Matrix(a) => row_dot(s, a, i, x, acc),
            };
        }
        Ok(acc)
    }

    /// Sends `frontier` (of `parent`) along `parent -> child` into `p`.
    fn push(
        &self,
        parent: PageId,
        child: PageId,
        frontier: &[(usize, S::Elem, S::Elem)],
        p: &mut Pending<S::Elem>,
        report: &mut WaveReport,
    ) -> Result<()> {
        let s = &self.s;
        let strategy = self.strategy;
        let e = self
            .edges
            .get(&(parent, child))
            .ok_or_else(|| Error::not_found(format!("no semiring edge {parent} -> {child}")))?;
        let zero = s.zero();
        let mut send = |i: usize, w: S::Elem, old: S::Elem, new: S::Elem| {
            report.pushes += 1;
            if strategy == Strategy::Subtract {
                // W ⊗ Δx, with Δx the difference of the stored values.
                match s.sub(new, old) {
                    Some(d) => {
                        let t = s.mul(w, d);
                        if t != zero {
                            let slot = p.delta.entry(i).or_insert(zero);
                            *slot = s.add(*slot, t);
                        }
                    }
                    None => {
                        p.dirty.insert(i);
                    }
                }
            } else {
                classify(s, strategy, p, i, s.mul(w, old), s.mul(w, new));
            }
        };
        for &(j, old, new) in frontier {
            match &e.weight {
                Weight::Scalar(w) => send(j, *w, old, new),
                Weight::Diagonal(d) => {
                    if let Some(&w) = d.get(j) {
                        send(j, w, old, new)
                    }
                }
                Weight::Matrix(_) => {
                    if let Some(t) = &e.transpose {
                        let (rows, vals) = t.row(j);
                        for (&i, &w) in rows.iter().zip(vals) {
                            send(i as usize, w, old, new);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a weight maps parent entry `i` to child entry `i` (scalar, diagonal).
fn rows_are_diagonal<E>(w: Option<&Weight<E>>) -> bool {
    matches!(w, Some(Weight::Scalar(_)) | Some(Weight::Diagonal(_)))
}

/// Records that a term of entry `i` went from `old` to `new`, by strategy: a
/// difference to add, an improvement to `⊕` in, or a dirty entry.
fn classify<S: Semiring>(
    s: &S,
    strategy: Strategy,
    p: &mut Pending<S::Elem>,
    i: usize,
    old: S::Elem,
    new: S::Elem,
) {
    if old == new {
        return;
    }
    match strategy {
        Strategy::Subtract => match s.sub(new, old) {
            Some(d) => {
                let slot = p.delta.entry(i).or_insert_with(|| s.zero());
                *slot = s.add(*slot, d);
            }
            None => {
                p.dirty.insert(i);
            }
        },
        Strategy::Improve => {
            if s.add(new, old) == new {
                let slot = p.improve.entry(i).or_insert_with(|| s.zero());
                *slot = s.add(*slot, new);
            } else {
                p.dirty.insert(i);
            }
        }
        Strategy::Recompute => {
            p.dirty.insert(i);
        }
    }
}

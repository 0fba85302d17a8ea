//! The dependency graph: typed, optionally weighted edges between pages,
//! kept acyclic, with a topological order maintained incrementally.
//!
//! An edge `parent -> child` says that the child depends on the parent. Its
//! [`EdgeKind`] says what a change of the parent does to the child (recompute
//! it, mark it stale, schedule a device copy, invalidate it); its optional
//! [`EdgeWeight`] is an opaque value the semiring layer will read. Between one
//! ordered pair of pages there is at most one edge of each kind.
//!
//! **Acyclicity.** An edge that would close a cycle is rejected with
//! [`ErrorCode::Cycle`]; the error's message names the cycle
//! (`page#3 -> page#7 -> page#3`) and [`Error::cycle_path`] returns it as a
//! path. A rejected edge changes nothing, not even the order.
//!
//! **Topological order, incrementally (Pearce–Kelly).** Every node carries an
//! order number `ord`, and for every edge `u -> v`, `ord(u) < ord(v)`. Adding
//! `u -> v` with `ord(u) < ord(v)` costs nothing. Otherwise only the *affected
//! region* `ord(v) ..= ord(u)` can be out of order: a forward search from `v`
//! that never leaves the region collects `F` (and finds `u` exactly when the
//! edge closes a cycle), a backward search from `u` collects `B`, and the order
//! numbers already held by `B ∪ F` are handed out again, `B` first then `F`,
//! each in its old relative order. Nodes outside the region keep their numbers,
//! so an insertion never re-sorts the whole graph (D. J. Pearce and P. H. J.
//! Kelly, "A dynamic topological sort algorithm for directed acyclic graphs",
//! JEA 2006). Removing an edge never breaks the order, so it costs nothing.
//! Order numbers are not dense: a removed node leaves a hole, which is harmless.
//!
//! All iteration is in a deterministic order (page id, then kind), so two
//! graphs built by the same calls behave identically; replay depends on that.

use crate::error::{Error, ErrorCode, ErrorDetail, Result};
use crate::id_hash::{IdHashMap, IdHashSet};
use crate::page_id::PageId;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// What a change of the parent does to the child. The numbers are stable
/// (they appear in logs and at the C ABI): never renumber, only append.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EdgeKind {
    /// Recompute the child from its data parents.
    Data = 0,
    /// Mark the child stale (it is not recomputed).
    Control = 1,
    /// Schedule a device copy of the child.
    GpuSync = 2,
    /// Invalidate the child and notify subscribers.
    Compiler = 3,
}

impl EdgeKind {
    /// Every kind, in numeric order.
    pub const ALL: [EdgeKind; 4] = [
        EdgeKind::Data,
        EdgeKind::Control,
        EdgeKind::GpuSync,
        EdgeKind::Compiler,
    ];

    /// The stable number.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The kind with this stable number.
    pub fn from_u8(n: u8) -> Result<EdgeKind> {
        EdgeKind::ALL
            .get(usize::from(n))
            .copied()
            .ok_or_else(|| Error::invalid(format!("unknown edge kind {n}")))
    }

    /// The stable name (`data`, `control`, `gpu-sync`, `compiler`).
    pub fn name(self) -> &'static str {
        match self {
            EdgeKind::Data => "data",
            EdgeKind::Control => "control",
            EdgeKind::GpuSync => "gpu-sync",
            EdgeKind::Compiler => "compiler",
        }
    }
}

/// An opaque value carried by an edge, for the semiring layer (`W_uv`).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum EdgeWeight {
    /// One scalar.
    Scalar(f64),
}

/// One edge of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// The page depended on.
    pub parent: PageId,
    /// The page that depends on it.
    pub child: PageId,
    /// What a change of the parent does to the child.
    pub kind: EdgeKind,
    /// Optional weight for the semiring layer.
    pub weight: Option<EdgeWeight>,
    /// When the edge was added (a graph-wide counter): orders a child's inputs.
    pub seq: u64,
}

/// A node's adjacency, kept in flat vectors (a wave walks them for every
/// page it plans, so they are contiguous rather than tree-shaped).
#[derive(Clone, Debug, Default)]
struct Node {
    ord: u64,
    /// Outgoing edges, sorted by (child, kind): found by binary search.
    out: Vec<Edge>,
    /// Incoming edges as (parent, kind), in the order they were added (by the
    /// edge's `seq`, which is a recompute function's input order); the edge
    /// itself lives in the parent's `out`.
    inc: Vec<(PageId, EdgeKind)>,
}

impl Node {
    /// Where the edge to `(child, kind)` is in `out`, or where it would go.
    fn out_pos(&self, child: PageId, kind: EdgeKind) -> std::result::Result<usize, usize> {
        self.out
            .binary_search_by(|e| (e.child, e.kind).cmp(&(child, kind)))
    }

    fn out_get(&self, child: PageId, kind: EdgeKind) -> Option<&Edge> {
        self.out_pos(child, kind).ok().map(|i| &self.out[i])
    }

    fn out_remove(&mut self, child: PageId, kind: EdgeKind) -> Option<Edge> {
        self.out_pos(child, kind).ok().map(|i| self.out.remove(i))
    }

    fn inc_remove(&mut self, parent: PageId, kind: EdgeKind) {
        if let Some(i) = self.inc.iter().position(|&x| x == (parent, kind)) {
            self.inc.remove(i);
        }
    }
}

/// A directed acyclic graph of pages. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct DependencyGraph {
    nodes: IdHashMap<PageId, Node>,
    /// `ord -> node`, the topological order.
    by_ord: BTreeMap<u64, PageId>,
    next_ord: u64,
    next_seq: u64,
    edges: usize,
    /// How many of `edges` are data edges (the rest are control, gpu-sync
    /// and compiler edges, which a commit turns into marks).
    data_edges: usize,
}

impl DependencyGraph {
    /// An empty graph.
    pub fn new() -> DependencyGraph {
        DependencyGraph::default()
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.edges
    }

    /// Whether some edge is not a data edge (control, gpu-sync, compiler):
    /// if none is, no commit marks any page, and the wave skips looking.
    pub fn has_non_data_edges(&self) -> bool {
        self.edges > self.data_edges
    }

    /// Whether `page` is a node.
    pub fn contains_node(&self, page: PageId) -> bool {
        self.nodes.contains_key(&page)
    }

    /// Adds `page` as a node (placed last in the order); a no-op if present.
    pub fn add_node(&mut self, page: PageId) {
        if self.nodes.contains_key(&page) {
            return;
        }
        let ord = self.next_ord;
        self.next_ord += 1;
        self.by_ord.insert(ord, page);
        self.nodes.insert(
            page,
            Node {
                ord,
                ..Node::default()
            },
        );
    }

    /// Removes `page` and every edge touching it (used when a page is deleted).
    /// Returns the removed edges; `NotFound` if the page is not a node.
    pub fn remove_node(&mut self, page: PageId) -> Result<Vec<Edge>> {
        let node = self
            .nodes
            .remove(&page)
            .ok_or_else(|| Error::not_found(format!("{page} is not in the dependency graph")))?;
        self.by_ord.remove(&node.ord);
        let mut removed = Vec::new();
        for &(parent, kind) in &node.inc {
            if let Some(p) = self.nodes.get_mut(&parent) {
                if let Some(e) = p.out_remove(page, kind) {
                    removed.push(e);
                }
            }
        }
        for e in node.out {
            if let Some(c) = self.nodes.get_mut(&e.child) {
                c.inc_remove(page, e.kind);
            }
            removed.push(e);
        }
        self.edges -= removed.len();
        self.data_edges -= removed.iter().filter(|e| e.kind == EdgeKind::Data).count();
        Ok(removed)
    }

    /// The edge `parent -> child` of this kind, if present.
    pub fn edge(&self, parent: PageId, child: PageId, kind: EdgeKind) -> Option<&Edge> {
        self.nodes.get(&parent)?.out_get(child, kind)
    }

    /// Adds the edge `parent -> child`, adding missing nodes.
    ///
    /// Errors: [`ErrorCode::Cycle`] if the edge would close a cycle (a
    /// self-edge included), with the cycle in the message and in
    /// [`Error::cycle_path`]; `InvalidArgument` if an edge of this kind already
    /// joins the pair. On error the graph is unchanged.
    pub fn add_edge(
        &mut self,
        parent: PageId,
        child: PageId,
        kind: EdgeKind,
        weight: Option<EdgeWeight>,
    ) -> Result<()> {
        if parent == child {
            return Err(cycle_error(parent, child, vec![parent, parent]));
        }
        if self.edge(parent, child, kind).is_some() {
            return Err(Error::invalid(format!(
                "a {} edge {parent} -> {child} already exists",
                kind.name()
            )));
        }
        // A page that is not a node yet has no edges, so it closes no cycle:
        // adding it first cannot make the call fail (the graph stays unchanged
        // on error). Then check, and reorder the affected region if needed.
        self.add_node(parent);
        self.add_node(child);
        let (lb, ub) = (self.ord_of(child), self.ord_of(parent));
        if lb < ub {
            self.reorder(parent, child, lb, ub)?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let edge = Edge {
            parent,
            child,
            kind,
            weight,
            seq,
        };
        if let Some(n) = self.nodes.get_mut(&parent) {
            if let Err(i) = n.out_pos(child, kind) {
                n.out.insert(i, edge);
            }
        }
        if let Some(n) = self.nodes.get_mut(&child) {
            // `seq` only grows: pushing keeps `inc` in input order.
            n.inc.push((parent, kind));
        }
        self.edges += 1;
        if kind == EdgeKind::Data {
            self.data_edges += 1;
        }
        Ok(())
    }

    /// Pearce–Kelly: the new edge `u -> v` has `ord(v) = lb < ub = ord(u)`.
    /// Finds the cycle (without changing anything) or reorders the region.
    fn reorder(&mut self, u: PageId, v: PageId, lb: u64, ub: u64) -> Result<()> {
        // Forward from v, within ord < ub (u itself has ord ub: reaching it is a cycle).
        let mut from: HashMap<PageId, PageId> = HashMap::new();
        let mut fwd = vec![v];
        let mut seen_f: BTreeSet<PageId> = BTreeSet::from([v]);
        let mut stack = vec![v];
        while let Some(w) = stack.pop() {
            for x in self.out_children(w) {
                if x == u {
                    let mut path = vec![u, w];
                    let mut cur = w;
                    while let Some(&prev) = from.get(&cur) {
                        path.push(prev);
                        cur = prev;
                    }
                    // path = u, w, ..., v (reversed chain); make it u -> v -> ... -> w -> u.
                    let mut cyc = vec![u];
                    cyc.extend(path[1..].iter().rev());
                    cyc.push(u);
                    return Err(cycle_error(u, v, cyc));
                }
                let ox = self.ord_of(x);
                if ox < ub && seen_f.insert(x) {
                    from.insert(x, w);
                    fwd.push(x);
                    stack.push(x);
                }
            }
        }
        // Backward from u, within ord > lb.
        let mut bwd = vec![u];
        let mut seen_b: BTreeSet<PageId> = BTreeSet::from([u]);
        let mut stack = vec![u];
        while let Some(w) = stack.pop() {
            let parents: Vec<PageId> = self
                .nodes
                .get(&w)
                .map(|n| n.inc.iter().map(|&(p, _)| p).collect())
                .unwrap_or_default();
            for x in parents {
                if self.ord_of(x) > lb && seen_b.insert(x) {
                    bwd.push(x);
                    stack.push(x);
                }
            }
        }
        bwd.sort_by_key(|&x| self.ord_of(x));
        fwd.sort_by_key(|&x| self.ord_of(x));
        let mut slots: Vec<u64> = bwd.iter().chain(&fwd).map(|&x| self.ord_of(x)).collect();
        slots.sort_unstable();
        for s in &slots {
            self.by_ord.remove(s);
        }
        for (&x, &o) in bwd.iter().chain(&fwd).zip(&slots) {
            if let Some(n) = self.nodes.get_mut(&x) {
                n.ord = o;
            }
            self.by_ord.insert(o, x);
        }
        Ok(())
    }

    fn out_children(&self, page: PageId) -> impl Iterator<Item = PageId> + '_ {
        self.nodes
            .get(&page)
            .into_iter()
            .flat_map(|n| n.out.iter().map(|e| e.child))
    }

    fn ord_of(&self, page: PageId) -> u64 {
        self.nodes.get(&page).map_or(u64::MAX, |n| n.ord)
    }

    /// Removes the edge `parent -> child` of this kind and returns it;
    /// `NotFound` if absent. The order stays valid as it is.
    pub fn remove_edge(&mut self, parent: PageId, child: PageId, kind: EdgeKind) -> Result<Edge> {
        let e = self
            .nodes
            .get_mut(&parent)
            .and_then(|n| n.out_remove(child, kind))
            .ok_or_else(|| {
                Error::not_found(format!(
                    "no {} edge {parent} -> {child} in the dependency graph",
                    kind.name()
                ))
            })?;
        if let Some(n) = self.nodes.get_mut(&child) {
            n.inc_remove(parent, kind);
        }
        self.edges -= 1;
        if kind == EdgeKind::Data {
            self.data_edges -= 1;
        }
        Ok(e)
    }

    /// The edges leaving `page`, by child then kind (empty for an unknown page).
    pub fn children(&self, page: PageId) -> impl Iterator<Item = &Edge> {
        self.nodes.get(&page).into_iter().flat_map(|n| n.out.iter())
    }

    /// The edges entering `page`, by parent then kind (empty for an unknown page).
    pub fn parents(&self, page: PageId) -> impl Iterator<Item = &Edge> + '_ {
        self.nodes
            .get(&page)
            .into_iter()
            .flat_map(|n| n.inc.iter())
            .filter_map(move |&(p, k)| self.edge(p, page, k))
    }

    /// The parents of `page` along edges of `kind`, in the order the edges were
    /// added (the input order of a recompute function).
    pub fn parents_of_kind(&self, page: PageId, kind: EdgeKind) -> Vec<PageId> {
        self.nodes.get(&page).map_or_else(Vec::new, |n| {
            n.inc
                .iter()
                .filter(|&&(_, k)| k == kind)
                .map(|&(p, _)| p)
                .collect()
        })
    }

    /// Every page reachable from `roots` along edges accepted by `follow`,
    /// roots excluded unless reachable from another root.
    pub fn descendants_by(
        &self,
        roots: impl IntoIterator<Item = PageId>,
        follow: impl Fn(&Edge) -> bool,
    ) -> BTreeSet<PageId> {
        self.reach(roots, &follow, IdHashSet::default())
            .into_iter()
            .collect()
    }

    /// The pages reachable from `roots` along edges accepted by `follow`
    /// (roots excluded unless reachable from another root), added to `seen`.
    fn reach(
        &self,
        roots: impl IntoIterator<Item = PageId>,
        follow: &impl Fn(&Edge) -> bool,
        mut seen: IdHashSet<PageId>,
    ) -> IdHashSet<PageId> {
        let mut stack: Vec<PageId> = roots.into_iter().collect();
        while let Some(w) = stack.pop() {
            for e in self.children(w) {
                if follow(e) && seen.insert(e.child) {
                    stack.push(e.child);
                }
            }
        }
        seen
    }

    /// `extra` plus every page reachable from `roots` and `extra` along edges
    /// accepted by `follow`, in topological order (pages that are not nodes
    /// are dropped). What a wave plans over; one pass, no ordered sets.
    pub fn region_in_order(
        &self,
        roots: impl IntoIterator<Item = PageId>,
        extra: &[PageId],
        follow: impl Fn(&Edge) -> bool,
    ) -> Vec<PageId> {
        let seen: IdHashSet<PageId> = extra.iter().copied().collect();
        let region = self.reach(
            roots.into_iter().chain(extra.iter().copied()),
            &follow,
            seen,
        );
        let mut v: Vec<(u64, PageId)> = region
            .into_iter()
            .filter_map(|p| self.nodes.get(&p).map(|n| (n.ord, p)))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// Every page reachable from `roots` along edges of any kind (roots excluded
    /// unless reachable from another root).
    pub fn descendants(&self, roots: impl IntoIterator<Item = PageId>) -> BTreeSet<PageId> {
        self.descendants_by(roots, |_| true)
    }

    /// Breadth-first order from `roots` (roots first, in the order given,
    /// duplicates and unknown pages skipped), along edges of any kind.
    pub fn bfs(&self, roots: impl IntoIterator<Item = PageId>) -> Vec<PageId> {
        let mut seen: IdHashSet<PageId> = IdHashSet::default();
        let mut queue: VecDeque<PageId> = VecDeque::new();
        for r in roots {
            if self.contains_node(r) && seen.insert(r) {
                queue.push_back(r);
            }
        }
        let mut out = Vec::new();
        while let Some(w) = queue.pop_front() {
            out.push(w);
            for e in self.children(w) {
                if seen.insert(e.child) {
                    queue.push_back(e.child);
                }
            }
        }
        out
    }

    /// The order number of `page` (for every edge `u -> v`, `ord(u) < ord(v)`).
    pub fn ord(&self, page: PageId) -> Option<u64> {
        self.nodes.get(&page).map(|n| n.ord)
    }

    /// Every node in topological order.
    pub fn topo_order(&self) -> Vec<PageId> {
        self.by_ord.values().copied().collect()
    }

    /// The nodes of `subset` in topological order (pages that are not nodes are dropped).
    pub fn topo_order_of(&self, subset: impl IntoIterator<Item = PageId>) -> Vec<PageId> {
        let mut v: Vec<(u64, PageId)> = subset
            .into_iter()
            .filter_map(|p| self.ord(p).map(|o| (o, p)))
            .collect();
        v.sort_unstable();
        v.dedup();
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// Every edge, by parent, child, kind.
    pub fn edges(&self) -> Vec<Edge> {
        let mut ids: Vec<PageId> = self.nodes.keys().copied().collect();
        ids.sort_unstable();
        ids.iter()
            .flat_map(|&p| self.children(p).cloned())
            .collect()
    }

    /// The graph's exact parts, for a checkpoint: the nodes with their order
    /// numbers (ascending by order), the edges (with their `seq`), and the next
    /// order number and edge sequence number to hand out. [`DependencyGraph::from_parts`]
    /// rebuilds an identical graph: same order, same input order of every page.
    pub fn to_parts(&self) -> GraphParts {
        GraphParts {
            nodes: self.by_ord.iter().map(|(&o, &p)| (p, o)).collect(),
            edges: self.edges(),
            next_ord: self.next_ord,
            next_seq: self.next_seq,
        }
    }

    /// Rebuilds a graph from [`DependencyGraph::to_parts`]. `InvalidArgument`
    /// if the parts are inconsistent (an edge going backward in the order, a
    /// duplicate, a counter not past what it counts).
    pub fn from_parts(parts: GraphParts) -> Result<DependencyGraph> {
        let mut g = DependencyGraph {
            next_ord: parts.next_ord,
            next_seq: parts.next_seq,
            ..DependencyGraph::default()
        };
        for (p, ord) in parts.nodes {
            if ord >= parts.next_ord || g.by_ord.insert(ord, p).is_some() {
                return Err(Error::invalid(format!(
                    "graph node {p}: bad order number {ord}"
                )));
            }
            if g.nodes
                .insert(
                    p,
                    Node {
                        ord,
                        ..Node::default()
                    },
                )
                .is_some()
            {
                return Err(Error::invalid(format!("graph node {p} appears twice")));
            }
        }
        for e in parts.edges {
            if e.seq >= parts.next_seq {
                return Err(Error::invalid(format!(
                    "edge {} -> {}: sequence number {} not below {}",
                    e.parent, e.child, e.seq, parts.next_seq
                )));
            }
            let (parent, child, kind) = (e.parent, e.child, e.kind);
            let Some(pn) = g.nodes.get_mut(&parent) else {
                return Err(Error::invalid(format!("edge from unknown node {parent}")));
            };
            match pn.out_pos(child, kind) {
                Ok(_) => {
                    return Err(Error::invalid(format!(
                        "edge {parent} -> {child} appears twice"
                    )))
                }
                Err(i) => pn.out.insert(i, e),
            }
            let Some(cn) = g.nodes.get_mut(&child) else {
                return Err(Error::invalid(format!("edge to unknown node {child}")));
            };
            cn.inc.push((parent, kind));
            g.edges += 1;
            if kind == EdgeKind::Data {
                g.data_edges += 1;
            }
        }
        // Incoming edges were pushed by parent: put them back in input order.
        let mut incs: Vec<(PageId, Vec<(PageId, EdgeKind)>)> = g
            .nodes
            .iter_mut()
            .filter(|(_, n)| n.inc.len() > 1)
            .map(|(&id, n)| (id, std::mem::take(&mut n.inc)))
            .collect();
        for (id, inc) in &mut incs {
            inc.sort_by_key(|&(p, k)| g.edge(p, *id, k).map_or(0, |e| e.seq));
        }
        for (id, inc) in incs {
            if let Some(n) = g.nodes.get_mut(&id) {
                n.inc = inc;
            }
        }
        g.check_invariants()
            .map_err(|e| Error::invalid(format!("graph parts: {}", e.message)))?;
        Ok(g)
    }

    /// Checks the internal invariants (every edge forward in the order, the
    /// incoming and outgoing indexes agree, the order index is a bijection).
    /// For tests and debugging; `Internal` names the first broken one.
    pub fn check_invariants(&self) -> Result<()> {
        let internal = |m: String| Error::new(ErrorCode::Internal, m);
        if self.by_ord.len() != self.nodes.len() {
            return Err(internal("order index and node set differ in size".into()));
        }
        let mut count = 0;
        for (&id, n) in &self.nodes {
            if self.by_ord.get(&n.ord) != Some(&id) {
                return Err(internal(format!("{id} is not at its order slot")));
            }
            if n.out
                .windows(2)
                .any(|w| (w[0].child, w[0].kind) >= (w[1].child, w[1].kind))
            {
                return Err(internal(format!("{id}: outgoing edges out of order")));
            }
            let seqs: Vec<u64> = n
                .inc
                .iter()
                .map(|&(p, k)| self.edge(p, id, k).map_or(u64::MAX, |e| e.seq))
                .collect();
            if seqs.windows(2).any(|w| w[0] >= w[1]) {
                return Err(internal(format!("{id}: incoming edges out of input order")));
            }
            for e in &n.out {
                let (c, k) = (e.child, e.kind);
                count += 1;
                let cn = self
                    .nodes
                    .get(&c)
                    .ok_or_else(|| internal(format!("{id} -> {c}: child missing")))?;
                if !cn.inc.contains(&(id, k)) || e.parent != id {
                    return Err(internal(format!("{id} -> {c}: indexes disagree")));
                }
                if n.ord >= cn.ord {
                    return Err(internal(format!(
                        "{id} -> {c} goes backward in the order ({} >= {})",
                        n.ord, cn.ord
                    )));
                }
            }
        }
        let inc: usize = self.nodes.values().map(|n| n.inc.len()).sum();
        if count != self.edges || inc != self.edges {
            return Err(internal("edge count is off".into()));
        }
        let data = self
            .nodes
            .values()
            .flat_map(|n| n.out.iter())
            .filter(|e| e.kind == EdgeKind::Data)
            .count();
        if data != self.data_edges {
            return Err(internal("data edge count is off".into()));
        }
        Ok(())
    }
}

/// A graph taken apart, exactly (see [`DependencyGraph::to_parts`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GraphParts {
    /// `(page, order number)`, ascending by order number.
    pub nodes: Vec<(PageId, u64)>,
    /// Every edge, by parent, child, kind.
    pub edges: Vec<Edge>,
    /// The order number the next new node gets.
    pub next_ord: u64,
    /// The sequence number the next new edge gets.
    pub next_seq: u64,
}

/// Formats a path as `page#1 -> page#2 -> page#1`.
pub fn format_path(path: &[PageId]) -> String {
    path.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" -> ")
}

fn cycle_error(parent: PageId, child: PageId, cycle: Vec<PageId>) -> Error {
    Error::new(
        ErrorCode::Cycle,
        format!(
            "edge {parent} -> {child} would close the cycle {}",
            format_path(&cycle)
        ),
    )
    .with_detail(ErrorDetail::Cycle(cycle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> PageId {
        PageId(n)
    }

    #[test]
    fn back_edge_reorders_only_what_it_must() {
        let mut g = DependencyGraph::new();
        for i in 1..=5 {
            g.add_node(p(i));
        }
        g.add_edge(p(4), p(2), EdgeKind::Data, None).unwrap();
        g.check_invariants().unwrap();
        assert!(g.ord(p(4)) < g.ord(p(2)));
        // Nodes outside the region [ord(2), ord(4)] keep their numbers.
        assert_eq!(g.ord(p(1)), Some(0));
        assert_eq!(g.ord(p(5)), Some(4));
    }

    #[test]
    fn cycle_names_its_path() {
        let mut g = DependencyGraph::new();
        g.add_edge(p(3), p(7), EdgeKind::Data, None).unwrap();
        g.add_edge(p(7), p(9), EdgeKind::Control, None).unwrap();
        let e = g.add_edge(p(9), p(3), EdgeKind::Data, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::Cycle);
        assert_eq!(e.cycle_path(), Some(&[p(9), p(3), p(7), p(9)][..]));
        assert!(e.message.contains("page#9 -> page#3 -> page#7 -> page#9"));
        let e = g.add_edge(p(7), p(7), EdgeKind::Data, None).unwrap_err();
        assert_eq!(e.cycle_path(), Some(&[p(7), p(7)][..]));
    }

    #[test]
    fn parts_rebuild_the_same_graph() {
        let mut g = DependencyGraph::new();
        g.add_edge(p(4), p(2), EdgeKind::Data, Some(EdgeWeight::Scalar(1.5)))
            .unwrap();
        g.add_edge(p(1), p(2), EdgeKind::Data, None).unwrap();
        g.add_edge(p(2), p(9), EdgeKind::Compiler, None).unwrap();
        g.add_node(p(7));
        g.remove_edge(p(2), p(9), EdgeKind::Compiler).unwrap();
        let h = DependencyGraph::from_parts(g.to_parts()).unwrap();
        assert_eq!(h.to_parts(), g.to_parts());
        assert_eq!(h.parents_of_kind(p(2), EdgeKind::Data), vec![p(4), p(1)]);
        let mut bad = g.to_parts();
        bad.edges[0].seq = bad.next_seq;
        assert!(DependencyGraph::from_parts(bad).is_err());
    }

    #[test]
    fn edge_kinds_have_stable_numbers() {
        for (i, k) in EdgeKind::ALL.iter().enumerate() {
            assert_eq!(k.as_u8() as usize, i);
            assert_eq!(EdgeKind::from_u8(k.as_u8()).unwrap(), *k);
        }
        assert!(EdgeKind::from_u8(4).is_err());
    }
}

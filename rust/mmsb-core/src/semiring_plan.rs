//! Semiring wave plans: the flat command list a semiring wave runs.
//!
//! Like [`crate::command_buffer`] for byte-level recompute functions, a
//! semiring wave is planned before it runs, as a flat list of
//! [`WaveCommand`]s over the nodes a change can reach, in topological order
//! and grouped into levels (a node's level is one more than the highest level
//! among its parents in the plan, so the nodes of one level are independent
//! and may run in parallel). The same list is what a GPU command ring or a
//! captured CUDA graph replays: each command names one node and one operation
//! on whole vectors or on a sparse frontier, never a closure.
//!
//! A **full** wave is, per node `v`: [`WaveOp::Reset`] (`x_v := b_v`, or the
//! zero vector without an input) then one [`WaveOp::Accumulate`] per parent
//! `u` (`x_v ⊕= W_uv ⊗ x_u`, a semiring mxv for a matrix weight).
//!
//! An **incremental** wave is, per node `v`: [`WaveOp::Settle`] (fold the
//! pending changes into `x_v` — deltas, improvements, or entries recomputed
//! from all parents, by [`Strategy`] — and record which entries changed: the
//! node's *frontier*) then one [`WaveOp::Push`] per child (send the frontier
//! along the edge into the child's pending changes). The plan is an upper
//! bound: a node whose pending set is empty when its turn comes settles to
//! nothing and pushes nothing (cutoff).

use crate::dependency_graph::{DependencyGraph, EdgeKind};
use crate::page_id::PageId;
use crate::semiring::Properties;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

/// How an incremental wave carries a change, chosen from the semiring's
/// [`Properties`] by [`Strategy::for_properties`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// The semiring has subtraction and a non-idempotent `⊕` (plus-times):
    /// push `W ⊗ Δx`, with `Δx = x_new ⊖ x_old`; a child adds what it receives.
    Subtract,
    /// `⊕` is idempotent (min, max, or): push improvements (`x_new ⊕ x_old =
    /// x_new`) as candidates a child `⊕`s in; an entry that got worse marks
    /// the child entries it reaches for recomputation from all parents.
    Improve,
    /// Neither: every entry a change reaches is recomputed from all parents
    /// (always correct; the fallback for user semirings).
    Recompute,
}

impl Strategy {
    /// The strategy the engine uses for a semiring with these properties.
    pub fn for_properties(p: Properties) -> Strategy {
        if p.has_subtraction && !p.idempotent_add {
            Strategy::Subtract
        } else if p.idempotent_add {
            Strategy::Improve
        } else {
            Strategy::Recompute
        }
    }

    /// `"subtract"`, `"improve"` or `"recompute"`.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Subtract => "subtract",
            Strategy::Improve => "improve",
            Strategy::Recompute => "recompute",
        }
    }
}

/// One operation of a wave. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaveOp {
    /// Full wave: `x_node := b_node` (or zero).
    Reset,
    /// Full wave: `x_node ⊕= W_{parent,node} ⊗ x_parent`.
    Accumulate {
        /// The parent whose contribution is added.
        parent: PageId,
    },
    /// Incremental wave: fold the node's pending changes in, record its frontier.
    Settle,
    /// Incremental wave: push the node's frontier along `node -> child`.
    Push {
        /// The child receiving the frontier.
        child: PageId,
    },
}

/// One command: an operation on one node, at that node's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WaveCommand {
    /// The node (page) the operation belongs to.
    pub node: PageId,
    /// The operation.
    pub op: WaveOp,
    /// The node's level (0 = no parent in the plan).
    pub level: u32,
}

/// A planned wave: commands in level order (topological within a level, each
/// node's commands contiguous). See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WavePlan {
    /// `None` for a full wave, else the incremental strategy.
    pub strategy: Option<Strategy>,
    /// The commands.
    pub commands: Vec<WaveCommand>,
    /// `levels[k]` is the range of `commands` at level `k`.
    pub levels: Vec<Range<usize>>,
}

impl WavePlan {
    /// Plans a wave over `region` (node ids of `graph`; only data edges count).
    /// `strategy` `None` plans a full wave (`Reset` + `Accumulate` per parent),
    /// otherwise an incremental one (`Settle` + `Push` per child in the region).
    pub fn plan(
        graph: &DependencyGraph,
        region: &BTreeSet<PageId>,
        strategy: Option<Strategy>,
    ) -> WavePlan {
        let mut level: HashMap<PageId, u32> = HashMap::new();
        let mut commands = Vec::new();
        for node in graph.topo_order_of(region.iter().copied()) {
            let parents = graph.parents_of_kind(node, EdgeKind::Data);
            let l = parents
                .iter()
                .filter_map(|p| level.get(p).map(|l| l + 1))
                .max()
                .unwrap_or(0);
            level.insert(node, l);
            match strategy {
                None => {
                    commands.push(WaveCommand {
                        node,
                        op: WaveOp::Reset,
                        level: l,
                    });
                    for parent in parents {
                        commands.push(WaveCommand {
                            node,
                            op: WaveOp::Accumulate { parent },
                            level: l,
                        });
                    }
                }
                Some(_) => {
                    commands.push(WaveCommand {
                        node,
                        op: WaveOp::Settle,
                        level: l,
                    });
                    for e in graph.children(node) {
                        if e.kind == EdgeKind::Data && region.contains(&e.child) {
                            commands.push(WaveCommand {
                                node,
                                op: WaveOp::Push { child: e.child },
                                level: l,
                            });
                        }
                    }
                }
            }
        }
        commands.sort_by_key(|c| c.level); // stable: topological within a level
        let mut levels: Vec<Range<usize>> = Vec::new();
        for (i, c) in commands.iter().enumerate() {
            match levels.last_mut() {
                Some(r) if commands[r.start].level == c.level => r.end = i + 1,
                _ => levels.push(i..i + 1),
            }
        }
        WavePlan {
            strategy,
            commands,
            levels,
        }
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// Whether there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_follow_the_properties() {
        let p = |sub, idem| Properties {
            commutative_add: true,
            commutative_mul: true,
            idempotent_add: idem,
            has_subtraction: sub,
            exact: true,
        };
        assert_eq!(Strategy::for_properties(p(true, false)), Strategy::Subtract);
        assert_eq!(Strategy::for_properties(p(false, true)), Strategy::Improve);
        assert_eq!(
            Strategy::for_properties(p(false, false)),
            Strategy::Recompute
        );
    }

    #[test]
    fn a_diamond_plans_in_levels_with_every_parent_before_its_child() {
        let mut g = DependencyGraph::new();
        let [a, b, c, d] = [PageId(1), PageId(2), PageId(3), PageId(4)];
        for (p, q) in [(a, b), (a, c), (b, d), (c, d)] {
            g.add_edge(p, q, EdgeKind::Data, None).unwrap();
        }
        let region: BTreeSet<PageId> = [a, b, c, d].into();
        let full = WavePlan::plan(&g, &region, None);
        assert_eq!(full.levels.len(), 3);
        let pos = |n: PageId, op: WaveOp| {
            full.commands
                .iter()
                .position(|c| c.node == n && c.op == op)
                .unwrap()
        };
        assert!(pos(d, WaveOp::Reset) > pos(b, WaveOp::Accumulate { parent: a }));
        assert!(pos(d, WaveOp::Accumulate { parent: c }) > pos(d, WaveOp::Reset));
        let inc = WavePlan::plan(&g, &[b, d].into(), Some(Strategy::Improve));
        assert_eq!(
            inc.commands
                .iter()
                .map(|c| (c.node, c.op))
                .collect::<Vec<_>>(),
            vec![
                (b, WaveOp::Settle),
                (b, WaveOp::Push { child: d }),
                (d, WaveOp::Settle)
            ]
        );
    }
}

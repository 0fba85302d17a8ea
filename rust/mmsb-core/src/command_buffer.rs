//! Command buffers: a wave's plan, made before anything runs.
//!
//! A wave first decides *what* may run, then runs it. The plan is a flat list
//! of [`Command`]s, one per derived page that a change could reach along data
//! edges, each naming the page, its recompute function and its inputs, in
//! topological order. Commands are grouped into *levels*: a command's level is
//! one more than the highest level among its inputs that are themselves
//! commands, so no command depends on another of its own level, and a level can
//! run in parallel once the levels before it are done.
//!
//! The plan is an upper bound: at run time a command whose inputs all turned out
//! unchanged is skipped (cutoff), unless it was *forced* (its function or its
//! inputs were redefined since the last wave). A flat buffer is also the shape a
//! GPU command ring or a captured CUDA graph wants later.

use crate::dependency_graph::{DependencyGraph, EdgeKind};
use crate::id_hash::IdHashMap;
use crate::page_id::PageId;
use crate::page_table::PageBits;
use crate::recompute::FunctionId;
use std::collections::BTreeSet;
use std::ops::Range;

/// Recompute one page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The page recomputed.
    pub page: PageId,
    /// Its recompute function.
    pub function: FunctionId,
    /// Its data parents, in input order.
    pub inputs: Vec<PageId>,
    /// Its level (0 = depends on no other command of this buffer).
    pub level: u32,
    /// Whether it runs even if no input changed.
    pub forced: bool,
    /// Whether another command of the buffer reads its page (so a wave must
    /// keep the page's new bytes for it; a page nobody in the wave reads only
    /// needs its changed range written).
    pub feeds: bool,
}

/// A wave's commands in level order (topological within a level). See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandBuffer {
    /// The commands, level by level.
    pub commands: Vec<Command>,
    /// `levels[k]` is the range of `commands` at level `k`.
    pub levels: Vec<Range<usize>>,
}

/// Scratch space of [`region_exceeds`], kept between waves so that a wave
/// clears only the marks it set.
#[derive(Debug, Default)]
pub(crate) struct ReachScratch {
    marks: PageBits,
    stack: Vec<PageId>,
    visited: Vec<PageId>,
}

/// Whether more than `limit` pages are reachable from `roots` along data
/// edges (roots not counted unless reached from another root). Stops as soon
/// as it knows, so it costs at most about `limit` pages' edges: a wave asks
/// it to choose between planning its own region and running the whole
/// graph's cached buffer. `dense_bound`: page ids below it get a mark bit
/// (see `page_table`).
pub(crate) fn region_exceeds(
    graph: &DependencyGraph,
    roots: impl IntoIterator<Item = PageId>,
    limit: usize,
    dense_bound: u64,
    scratch: &mut ReachScratch,
) -> bool {
    let ReachScratch {
        marks,
        stack,
        visited,
    } = scratch;
    marks.grow_to(dense_bound);
    stack.clear();
    visited.clear();
    stack.extend(roots);
    let mut exceeded = false;
    'walk: while let Some(w) = stack.pop() {
        for e in graph.children(w) {
            if e.kind == EdgeKind::Data && marks.insert(e.child) {
                visited.push(e.child);
                if visited.len() > limit {
                    exceeded = true;
                    break 'walk;
                }
                stack.push(e.child);
            }
        }
    }
    for &p in visited.iter() {
        marks.remove(p);
    }
    exceeded
}

impl CommandBuffer {
    /// Plans a wave: every page reachable along data edges from `changed` or
    /// `forced`, plus `forced` itself, that has a function in `functions`.
    pub fn plan(
        graph: &DependencyGraph,
        functions: &IdHashMap<PageId, FunctionId>,
        changed: &BTreeSet<PageId>,
        forced: &BTreeSet<PageId>,
    ) -> CommandBuffer {
        let forced_list: Vec<PageId> = forced.iter().copied().collect();
        let region = graph.region_in_order(changed.iter().copied(), &forced_list, |e| {
            e.kind == EdgeKind::Data
        });
        // Each command's level and its index in `commands` (before sorting).
        let mut level: IdHashMap<PageId, (u32, usize)> = IdHashMap::default();
        level.reserve(region.len());
        let mut commands = Vec::with_capacity(region.len());
        // Pages outside the graph (a function on a page without edges) have
        // no inputs and no children: they go first, by id. Only forced pages
        // can be such (every reached page is a node), and `forced` is sorted.
        let loose = forced.iter().copied().filter(|p| !graph.contains_node(*p));
        for page in loose.chain(region) {
            let Some(&function) = functions.get(&page) else {
                continue;
            };
            let inputs = graph.parents_of_kind(page, EdgeKind::Data);
            let mut l = 0;
            for q in &inputs {
                if let Some(&(lq, at)) = level.get(q) {
                    l = l.max(lq + 1);
                    if let Some(c) = commands.get_mut(at) {
                        let c: &mut Command = c;
                        c.feeds = true;
                    }
                }
            }
            level.insert(page, (l, commands.len()));
            commands.push(Command {
                page,
                function,
                inputs,
                level: l,
                forced: !forced.is_empty() && forced.contains(&page),
                feeds: false,
            });
        }
        commands.sort_by_key(|c| c.level); // stable: topological within a level
        let mut levels: Vec<Range<usize>> = Vec::new();
        for (i, c) in commands.iter().enumerate() {
            match levels.last_mut() {
                Some(r) if commands[r.start].level == c.level => r.end = i + 1,
                _ => levels.push(i..i + 1),
            }
        }
        CommandBuffer { commands, levels }
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
    use proptest::prelude::*;

    proptest! {
        /// On random DAGs of all edge kinds, `region_exceeds` says exactly
        /// whether the data-edge descendants of the roots outnumber the
        /// limit, and leaves its marks empty for the next call (asked
        /// several times on one scratch).
        #[test]
        fn region_exceeds_matches_counting_the_descendants(
            edges in proptest::collection::vec((1u64..60, 1u64..60, 0u8..4), 0..200),
            queries in proptest::collection::vec(
                (proptest::collection::vec(1u64..60, 0..4), 0usize..70, 0u64..80),
                1..6,
            ),
        ) {
            let mut g = DependencyGraph::new();
            for (a, b, k) in edges {
                let (a, b) = (a.min(b), a.max(b));
                if a != b {
                    let kind = EdgeKind::from_u8(k).unwrap();
                    let _ = g.add_edge(PageId(a), PageId(b), kind, None);
                }
            }
            let mut scratch = ReachScratch::default();
            for (roots, limit, bound) in queries {
                let roots: Vec<PageId> = roots.into_iter().map(PageId).collect();
                let n = g
                    .descendants_by(roots.iter().copied(), |e| e.kind == EdgeKind::Data)
                    .len();
                let got = region_exceeds(&g, roots.iter().copied(), limit, bound, &mut scratch);
                prop_assert_eq!(got, n > limit);
            }
        }
    }

    /// `a -> b -> c` and `a -> d`, functions on `b`, `c`, `d`: only `b` is
    /// read by another command; the order is topological by level.
    #[test]
    fn feeds_marks_exactly_the_commands_another_command_reads() {
        let [a, b, c, d] = [1, 2, 3, 4].map(PageId);
        let mut g = DependencyGraph::new();
        for (p, q) in [(a, b), (b, c), (a, d)] {
            g.add_edge(p, q, EdgeKind::Data, None).unwrap();
        }
        let mut f = IdHashMap::default();
        for (i, p) in [b, c, d].into_iter().enumerate() {
            f.insert(p, FunctionId(i as u64 + 1));
        }
        let cb = CommandBuffer::plan(&g, &f, &BTreeSet::from([a]), &BTreeSet::new());
        let feeds: Vec<(PageId, bool, u32)> = cb
            .commands
            .iter()
            .map(|c| (c.page, c.feeds, c.level))
            .collect();
        assert_eq!(feeds.len(), 3);
        for (p, fed, level) in feeds {
            assert_eq!(fed, p == b, "{p}");
            assert_eq!(level, u32::from(p == c), "{p}");
        }
    }
}

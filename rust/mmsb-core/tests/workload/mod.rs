//! Shared by the durability tests (as `mod workload`): a deterministic workload and the reference model.
//!
//! The workload is a seeded sequence of commits (page creation and deletion,
//! metadata, numeric views, dense/masked/sparse deltas, compare-and-set),
//! generated against the model so that every commit is valid. The model is a
//! plain in-memory `PageStore` to which each operation is applied directly, one
//! at a time, with none of the log, recovery or commit machinery: commit `k`
//! (1-based) of the workload is expected to get LSN `k` in a fresh store.

#![allow(dead_code)]

use mmsb_core::{DType, Delta, NumericView, Op, PageId, PageLocation, PageStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Applies one op to the model the simplest way.
pub fn model_apply(m: &mut PageStore, op: &Op) {
    match op {
        Op::CreatePage { size, location } => {
            m.create_page(*size, *location).unwrap();
        }
        Op::DeletePage(id) => m.delete_page(*id).unwrap(),
        Op::SetMetadata { page, key, value } => m.set_metadata(*page, key, value).unwrap(),
        Op::RemoveMetadata { page, key } => {
            let _ = m.remove_metadata(*page, key);
        }
        Op::SetView { page, view } => m.set_view(*page, *view).unwrap(),
        Op::Delta(d) => {
            m.apply_delta(d).unwrap();
        }
        Op::AddEdge { .. } | Op::RemoveEdge { .. } => {
            panic!("the workload makes no graph edits (the propagation tests cover them)")
        }
    }
}

/// The model after the first `n` commits.
pub fn model_at(commits: &[Vec<Op>], n: u64) -> PageStore {
    let mut m = PageStore::new();
    for c in &commits[..n as usize] {
        for op in c {
            model_apply(&mut m, op);
        }
    }
    m
}

fn payload(rng: &mut StdRng, n: usize) -> Vec<u8> {
    if rng.gen_bool(0.5) {
        (0..n).map(|_| rng.gen()).collect()
    } else {
        // Zero-heavy, as real sparse state is (and what compression is for).
        (0..n)
            .map(|_| if rng.gen_bool(0.8) { 0 } else { rng.gen() })
            .collect()
    }
}

/// `n` valid commits from `seed`.
pub fn workload(seed: u64, n: usize) -> Vec<Vec<Op>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut m = PageStore::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let k = rng.gen_range(1..=4);
        let mut commit = Vec::new();
        let mut touched: Vec<PageId> = Vec::new();
        for _ in 0..k {
            let ids = m.page_ids();
            let choice = if ids.is_empty() {
                0
            } else {
                rng.gen_range(0..20)
            };
            let op = match choice {
                0 | 1 if ids.len() < 12 => Op::CreatePage {
                    size: rng.gen_range(1..=300),
                    location: PageLocation::Cpu,
                },
                2 if ids.len() > 3 => Op::DeletePage(ids[rng.gen_range(0..ids.len())]),
                3 => {
                    let n = rng.gen_range(0..10);
                    Op::SetMetadata {
                        page: ids[rng.gen_range(0..ids.len())],
                        key: format!("k{}", rng.gen_range(0..3)),
                        value: payload(&mut rng, n),
                    }
                }
                4 => Op::RemoveMetadata {
                    page: ids[rng.gen_range(0..ids.len())],
                    key: format!("k{}", rng.gen_range(0..3)),
                },
                5 => {
                    let page = ids[rng.gen_range(0..ids.len())];
                    let size = m.page(page).unwrap().size();
                    let view = rng.gen_bool(0.7).then(|| NumericView {
                        dtype: DType::F32,
                        len: rng.gen_range(0..=size / 4),
                    });
                    Op::SetView { page, view }
                }
                _ if ids.is_empty() => Op::CreatePage {
                    size: 64,
                    location: PageLocation::Cpu,
                },
                _ => {
                    let page = ids[rng.gen_range(0..ids.len())];
                    let size = m.page(page).unwrap().size();
                    let off = rng.gen_range(0..size);
                    let len = rng.gen_range(1..=size - off);
                    let mut d = match rng.gen_range(0..3) {
                        0 => Delta::dense(page, off, payload(&mut rng, len as usize)),
                        1 => {
                            let flags: Vec<bool> = (0..len).map(|_| rng.gen_bool(0.3)).collect();
                            Delta::masked(
                                page,
                                off,
                                payload(&mut rng, len as usize),
                                mmsb_core::mask::from_flags(&flags),
                            )
                        }
                        _ => {
                            let flags: Vec<bool> = (0..len).map(|_| rng.gen_bool(0.3)).collect();
                            let ones = flags.iter().filter(|&&f| f).count();
                            Delta::sparse(
                                page,
                                off,
                                len,
                                mmsb_core::mask::from_flags(&flags),
                                payload(&mut rng, ones),
                            )
                        }
                    }
                    .with_source("workload");
                    if !touched.contains(&page) && rng.gen_bool(0.2) {
                        d = d.with_expected_epoch(m.page(page).unwrap().epoch());
                    }
                    touched.push(page);
                    Op::Delta(d)
                }
            };
            if let Op::DeletePage(id) = &op {
                touched.push(*id);
            }
            model_apply(&mut m, &op);
            commit.push(op);
        }
        out.push(commit);
    }
    out
}

/// Asserts two states are equal: same pages, bytes, epochs, views, metadata.
pub fn assert_same_state(got: &PageStore, want: &PageStore, ctx: &str) {
    assert_eq!(got.page_ids(), want.page_ids(), "{ctx}: page ids differ");
    for id in want.page_ids() {
        let (g, w) = (got.page(id).unwrap(), want.page(id).unwrap());
        assert_eq!(g.bytes(), w.bytes(), "{ctx}: bytes of {id} differ");
        assert_eq!(g.epoch(), w.epoch(), "{ctx}: epoch of {id} differs");
        assert_eq!(g.view(), w.view(), "{ctx}: view of {id} differs");
        let gm: Vec<_> = g.metadata_iter().collect();
        let wm: Vec<_> = w.metadata_iter().collect();
        assert_eq!(gm, wm, "{ctx}: metadata of {id} differs");
    }
    assert_eq!(
        got.next_page_id(),
        want.next_page_id(),
        "{ctx}: next page id differs"
    );
}

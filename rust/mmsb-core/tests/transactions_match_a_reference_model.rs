//! Interleaved transactions against a reference model of optimistic validation.
//!
//! Proptest draws a few transactions (each a program of reads and writes of
//! one-word pages, a write storing a value computed from what the
//! transaction has read so far) and a random interleaving of their steps,
//! plus plain commits by an outside writer. The steps run on one thread
//! against a real store and, side by side, against a model written from the
//! rules in `docs/transactions.md` alone: per-page versions that move with
//! every delta that changes a byte, a read set and a write set of (page,
//! version), validation of both at every first read and at commit. The two
//! must agree on every read value, on which steps conflict, and on the final
//! pages; and the final pages must equal a serial replay of the committed
//! transactions in commit order (serializability).

mod common;

use mmsb_core::{Delta, ErrorCode, Op, PageId, PageLocation, Store, Transaction};
use proptest::prelude::*;
use std::collections::BTreeMap;

const PAGES: u64 = 4;

#[derive(Clone, Copy, Debug)]
enum Step {
    /// Transaction `t` reads page `p`.
    Read(usize, u64),
    /// Transaction `t` writes page `p` := (sum of what it read) * 3 + `k`.
    Write(usize, u64, u64),
    /// Transaction `t` commits.
    Commit(usize),
    /// An outside commit sets page `p` to `v`.
    Outside(u64, u64),
}

/// The model's view of one transaction.
#[derive(Default, Clone, Debug)]
struct MTxn {
    dead: bool,
    done: bool,
    reads: BTreeMap<u64, (u64, u64)>, // page -> (version, value)
    writes: BTreeMap<u64, u64>,       // page -> version at first write
    buffered: Vec<(u64, u64)>,        // (page, value) writes, in order
    read_sum: u64,
}

struct Model {
    value: [u64; PAGES as usize],
    version: [u64; PAGES as usize],
}

impl Model {
    fn valid(&self, t: &MTxn) -> bool {
        t.reads
            .iter()
            .all(|(&p, &(v, _))| self.version[p as usize] == v)
            && t.writes
                .iter()
                .all(|(&p, &v)| self.version[p as usize] == v)
    }
    fn set(&mut self, p: u64, v: u64) {
        if self.value[p as usize] != v {
            self.value[p as usize] = v;
            self.version[p as usize] += 1;
        }
    }
}

fn word(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn steps(ntx: usize) -> impl Strategy<Value = Vec<Step>> {
    // Each transaction: 1..5 accesses, then a commit; interleaved with outside commits.
    let program = prop::collection::vec((any::<bool>(), 0..PAGES, 0..4u64), 1..5);
    (
        prop::collection::vec(program, ntx),
        prop::collection::vec((0..PAGES, 0..3u64), 0..4),
        any::<u64>(),
    )
        .prop_map(move |(programs, outside, seed)| {
            let mut queues: Vec<Vec<Step>> = programs
                .into_iter()
                .enumerate()
                .map(|(t, prog)| {
                    let mut q: Vec<Step> = prog
                        .into_iter()
                        .map(|(is_read, p, k)| {
                            if is_read {
                                Step::Read(t, p)
                            } else {
                                Step::Write(t, p, k)
                            }
                        })
                        .collect();
                    q.push(Step::Commit(t));
                    q.reverse();
                    q
                })
                .collect();
            queues.push(
                outside
                    .into_iter()
                    .map(|(p, v)| Step::Outside(p, v))
                    .collect(),
            );
            // A seeded random merge that keeps each queue's order.
            let mut rng = seed | 1;
            let mut out = Vec::new();
            while queues.iter().any(|q| !q.is_empty()) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let live: Vec<usize> = (0..queues.len())
                    .filter(|&i| !queues[i].is_empty())
                    .collect();
                let i = live[(rng % live.len() as u64) as usize];
                out.push(queues[i].pop().unwrap());
            }
            out
        })
}

fn run(schedule: &[Step], ntx: usize) -> Result<(), TestCaseError> {
    let store = Store::in_memory();
    let ids: Vec<PageId> = store
        .commit(
            (0..PAGES)
                .map(|_| Op::CreatePage {
                    size: 8,
                    location: PageLocation::Cpu,
                })
                .collect(),
        )
        .unwrap()
        .created;
    let mut model = Model {
        value: [0; PAGES as usize],
        version: [0; PAGES as usize],
    };
    let mut txns: Vec<Option<Transaction<'_>>> = (0..ntx).map(|_| Some(store.begin())).collect();
    let mut mt: Vec<MTxn> = vec![MTxn::default(); ntx];
    // Committed transactions' (page, value) writes in commit order, for the serial replay.
    let mut committed: Vec<Vec<(u64, u64)>> = Vec::new();
    let mut outside_log: Vec<(usize, u64, u64)> = Vec::new(); // (position in commit order, page, value)
    for (i, &step) in schedule.iter().enumerate() {
        match step {
            Step::Outside(p, v) => {
                store
                    .commit(vec![Op::Delta(Delta::dense(ids[p as usize], 0, word(v)))])
                    .unwrap();
                model.set(p, v);
                outside_log.push((committed.len(), p, v));
            }
            Step::Read(t, p) => {
                if mt[t].dead || mt[t].done {
                    continue;
                }
                let real = txns[t].as_mut().unwrap().read(ids[p as usize]);
                let m = &mut mt[t];
                let own = m.buffered.iter().rev().find(|w| w.0 == p).map(|w| w.1);
                let expect = if let Some(&(_, val)) = m.reads.get(&p) {
                    Some(own.unwrap_or(val))
                } else if model.valid(m) {
                    let val = model.value[p as usize];
                    m.reads.insert(p, (model.version[p as usize], val));
                    Some(own.unwrap_or(val))
                } else {
                    None
                };
                match (real, expect) {
                    (Ok(bytes), Some(v)) => {
                        let got = u64::from_le_bytes(bytes.try_into().unwrap());
                        prop_assert_eq!(got, v, "step {}: read value", i);
                        m.read_sum = m.read_sum.wrapping_add(got);
                    }
                    (Err(e), None) => {
                        prop_assert_eq!(e.code, ErrorCode::TransactionConflict, "step {}", i);
                        m.dead = true;
                        txns[t] = None;
                    }
                    (r, e) => {
                        return Err(TestCaseError::fail(format!(
                            "step {i} {step:?}: store {r:?}, model {e:?}"
                        )))
                    }
                }
            }
            Step::Write(t, p, k) => {
                if mt[t].dead || mt[t].done {
                    continue;
                }
                let m = &mut mt[t];
                let v = m.read_sum.wrapping_mul(3).wrapping_add(k) % 5;
                txns[t]
                    .as_mut()
                    .unwrap()
                    .write(Delta::dense(ids[p as usize], 0, word(v)))
                    .unwrap();
                if !m.reads.contains_key(&p) && !m.writes.contains_key(&p) {
                    m.writes.insert(p, model.version[p as usize]);
                }
                m.buffered.push((p, v));
            }
            Step::Commit(t) => {
                if mt[t].dead {
                    continue;
                }
                mt[t].done = true;
                let real = txns[t].take().unwrap().commit();
                let ok = model.valid(&mt[t]);
                prop_assert_eq!(real.is_ok(), ok, "step {}: commit outcome {:?}", i, real);
                if let Err(e) = real {
                    prop_assert_eq!(e.code, ErrorCode::TransactionConflict);
                } else {
                    // Each delta that changes a byte moves the page's epoch.
                    let w = mt[t].buffered.clone();
                    for &(p, v) in &w {
                        model.set(p, v);
                    }
                    committed.push(w);
                }
            }
        }
    }
    for (p, id) in ids.iter().enumerate() {
        let got = u64::from_le_bytes(store.read(*id).unwrap().try_into().unwrap());
        prop_assert_eq!(got, model.value[p], "final page {}", p);
        prop_assert_eq!(
            store.page(*id).unwrap().epoch(),
            model.version[p],
            "final epoch {}",
            p
        );
    }
    // Serial replay: outside commits and committed transactions in commit order.
    let mut serial = [0u64; PAGES as usize];
    let mut oi = 0;
    for (k, w) in committed.iter().enumerate() {
        while oi < outside_log.len() && outside_log[oi].0 == k {
            serial[outside_log[oi].1 as usize] = outside_log[oi].2;
            oi += 1;
        }
        for &(p, v) in w {
            serial[p as usize] = v;
        }
    }
    for &(_, p, v) in &outside_log[oi..] {
        serial[p as usize] = v;
    }
    prop_assert_eq!(serial, model.value);
    Ok(())
}

proptest! {
    #![proptest_config(common::config(256))]

    #[test]
    fn interleaved_transactions_match_the_model(schedule in steps(3)) {
        run(&schedule, 3)?;
    }
}

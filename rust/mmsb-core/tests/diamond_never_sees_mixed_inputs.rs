//! Glitch freedom on diamonds: `a -> {b, c} -> d`. When `a` changes, `d` runs
//! once, after both `b` and `c`, and sees both at their post-commit epochs and
//! bytes; with many layered diamonds, no function ever sees an old input.

use mmsb_core::{Delta, EdgeKind, Engine, PageId, PageLocation, RecomputeFn, RecomputeInputs};
use std::sync::{Arc, Mutex};

type Log = Arc<Mutex<Vec<(PageId, Vec<PageId>, Vec<u64>, Vec<Vec<u8>>)>>>;

fn recording(log: &Log, add: u8) -> RecomputeFn {
    let log = Arc::clone(log);
    RecomputeFn::rust(move |inp: &RecomputeInputs<'_>, out: &mut [u8]| {
        log.lock().unwrap().push((
            inp.page,
            inp.parents.to_vec(),
            inp.epochs.to_vec(),
            inp.inputs.iter().map(|s| s.to_vec()).collect(),
        ));
        for (j, o) in out.iter_mut().enumerate() {
            *o = inp.inputs.iter().fold(add, |acc, x| acc.wrapping_add(x[j]));
        }
        Ok(())
    })
}

#[test]
fn layered_diamonds_see_only_post_commit_inputs() {
    let mut e = Engine::new();
    let log: Log = Arc::default();
    let root = e.create_page(4, PageLocation::Cpu).unwrap();
    let mut layer = vec![root];
    let mut all = vec![];
    // 6 layers of diamonds: each layer has 2 pages fed by both pages (or the
    // root) of the layer before, so every page is reachable along many paths.
    for l in 0..6 {
        let next: Vec<PageId> = (0..2)
            .map(|_| e.create_page(4, PageLocation::Cpu).unwrap())
            .collect();
        for &n in &next {
            for &p in &layer {
                e.add_edge(p, n, EdgeKind::Data, None).unwrap();
            }
            e.set_recompute(n, recording(&log, l)).unwrap();
        }
        all.extend(next.iter().copied());
        layer = next;
    }
    let sink = e.create_page(4, PageLocation::Cpu).unwrap();
    for &p in &layer {
        e.add_edge(p, sink, EdgeKind::Data, None).unwrap();
    }
    e.set_recompute(sink, recording(&log, 0)).unwrap();
    all.push(sink);
    e.propagate().unwrap();
    for round in 1..=5u8 {
        log.lock().unwrap().clear();
        let r = e.commit(&[Delta::dense(root, 0, vec![round; 4])]).unwrap();
        let log = log.lock().unwrap();
        // Every derived page ran exactly once.
        let mut ran: Vec<PageId> = log.iter().map(|x| x.0).collect();
        ran.sort_unstable();
        let mut expect = all.clone();
        expect.sort_unstable();
        assert_eq!(ran, expect);
        assert_eq!(r.recomputed.len(), all.len());
        for (page, parents, epochs, bytes) in log.iter() {
            for ((q, ep), b) in parents.iter().zip(epochs).zip(bytes) {
                let pg = e.store().page(*q).unwrap();
                assert_eq!(*ep, pg.epoch(), "{page} saw {q} at an old epoch");
                assert_eq!(&b[..], pg.bytes(), "{page} saw old bytes of {q}");
            }
        }
    }
}

#[test]
fn a_simple_diamond_runs_its_join_once() {
    let mut e = Engine::new();
    let log: Log = Arc::default();
    let [a, b, c, d] = [(); 4].map(|_| e.create_page(1, PageLocation::Cpu).unwrap());
    e.add_edge(a, b, EdgeKind::Data, None).unwrap();
    e.add_edge(a, c, EdgeKind::Data, None).unwrap();
    e.add_edge(b, d, EdgeKind::Data, None).unwrap();
    e.add_edge(c, d, EdgeKind::Data, None).unwrap();
    e.set_recompute(b, recording(&log, 1)).unwrap();
    e.set_recompute(c, recording(&log, 2)).unwrap();
    e.set_recompute(d, recording(&log, 0)).unwrap();
    e.propagate().unwrap();
    log.lock().unwrap().clear();
    let r = e.commit(&[Delta::dense(a, 0, vec![10])]).unwrap();
    assert_eq!(r.recomputed.len(), 3);
    assert_eq!(r.recomputed.last(), Some(&d));
    assert_eq!(e.store().read(d).unwrap(), vec![11 + 12]);
    // b and c share a level; d is on the next.
    let plan = e.plan_commit(&[Delta::dense(a, 0, vec![11])]).unwrap();
    assert_eq!(plan.commands.levels.len(), 2);
    assert_eq!(plan.commands.commands[2].page, d);
    assert_eq!(plan.commands.commands[2].inputs, vec![b, c]);
}

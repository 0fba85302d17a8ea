//! Events on the durable store: delivered after the commit is acknowledged,
//! outside the commit lock (a callback may read the store), one per changed
//! page and mark; marks are live notices and do not survive reopening.

use mmsb_core::{
    Delta, EdgeKind, Event, EventKind, Op, PageId, PageLocation, RecomputeFn, Store, StoreOptions,
};
use std::sync::{Arc, Mutex, Weak};

/// What a callback saw: the event, the store's LSN and the page's bytes.
type Seen = Arc<Mutex<Vec<(Event, u64, Vec<u8>)>>>;

#[test]
fn callbacks_see_the_committed_state_and_marks_are_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
    let ids = s
        .commit(
            (0..3)
                .map(|_| Op::CreatePage {
                    size: 4,
                    location: PageLocation::Cpu,
                })
                .collect(),
        )
        .unwrap()
        .created;
    let [a, b, st] = [ids[0], ids[1], ids[2]];
    s.set_recompute(b, RecomputeFn::Passthrough).unwrap();
    s.add_edge(a, b, EdgeKind::Data, None).unwrap();
    s.add_edge(a, st, EdgeKind::Control, None).unwrap();
    let seen: Seen = Arc::default();
    let weak: Weak<Store> = Arc::downgrade(&s);
    for kind in [EventKind::PageChanged, EventKind::Stale] {
        let (seen, weak) = (Arc::clone(&seen), weak.clone());
        s.subscribe(kind, move |ev: &Event| {
            // Reading the store from a callback must not deadlock, and must
            // show the commit the event is about.
            let store = weak.upgrade().unwrap();
            let bytes = store.read(ev.page()).unwrap();
            seen.lock().unwrap().push((*ev, store.lsn(), bytes));
        });
    }
    let r = s
        .commit(vec![Op::Delta(Delta::dense(a, 0, vec![5, 6]))])
        .unwrap();
    let got = std::mem::take(&mut *seen.lock().unwrap());
    let pages: Vec<(PageId, EventKind)> =
        got.iter().map(|(e, _, _)| (e.page(), e.kind())).collect();
    assert_eq!(
        pages,
        vec![
            (a, EventKind::PageChanged),
            (b, EventKind::PageChanged),
            (st, EventKind::Stale)
        ]
    );
    for (_, lsn, _) in &got {
        assert_eq!(*lsn, r.lsn);
    }
    assert_eq!(got[1].2, vec![5, 6, 0, 0]);
    assert!(s.is_stale(st));
    assert_eq!(r.propagation.stale, vec![st]);
    assert_eq!(r.propagation.recomputed, vec![b]);
    let s = Arc::try_unwrap(s).unwrap();
    s.close().unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(!s.is_stale(st), "marks are not durable");
    assert_eq!(s.read(b).unwrap(), vec![5, 6, 0, 0]);
}

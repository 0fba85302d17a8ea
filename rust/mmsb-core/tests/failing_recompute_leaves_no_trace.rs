//! A recompute function that fails (an error, a panic, a C status) aborts the
//! whole commit: no page bytes, epochs, marks or graph change, and the engine
//! goes on working once the cause is gone.

use mmsb_core::{
    Delta, EdgeKind, Engine, Error, ErrorCode, PageId, PageLocation, RecomputeFn, RecomputeInputs,
};
use std::ffi::c_void;

type Snapshot = (
    Vec<(PageId, Vec<u8>, u64)>,
    Vec<(u64, u64, u8)>,
    Vec<PageId>,
    Vec<PageId>,
);

fn snapshot(e: &Engine) -> Snapshot {
    let pages = e
        .store()
        .page_ids()
        .into_iter()
        .map(|p| {
            let pg = e.store().page(p).unwrap();
            (p, pg.bytes().to_vec(), pg.epoch())
        })
        .collect();
    let edges = e
        .graph()
        .edges()
        .iter()
        .map(|x| (x.parent.0, x.child.0, x.kind.as_u8()))
        .collect();
    (
        pages,
        edges,
        e.graph().topo_order(),
        e.stale_pages().iter().copied().collect(),
    )
}

unsafe extern "C" fn c_fails_on_ff(
    _user_data: *mut c_void,
    inputs: *const *const u8,
    _input_lens: *const u64,
    _n: u64,
    out: *mut u8,
    _out_len: u64,
) -> i32 {
    // SAFETY: the engine passes at least one input of 4 bytes and a 4-byte output.
    unsafe {
        let b = **inputs;
        if b == 0xFF {
            return ErrorCode::InvariantViolation.as_i32();
        }
        *out = b;
    }
    0
}

/// a -> b -> c (and a control edge a -> s): `c` fails when its input starts with 0xFF.
fn setup(fail: RecomputeFn) -> (Engine, [PageId; 4]) {
    let mut e = Engine::new();
    let ids: Vec<PageId> = (0..4)
        .map(|_| e.create_page(4, PageLocation::Cpu).unwrap())
        .collect();
    let (a, b, c, s) = (ids[0], ids[1], ids[2], ids[3]);
    e.add_edge(a, b, EdgeKind::Data, None).unwrap();
    e.add_edge(b, c, EdgeKind::Data, None).unwrap();
    e.add_edge(a, s, EdgeKind::Control, None).unwrap();
    e.set_recompute(b, RecomputeFn::Passthrough).unwrap();
    e.set_recompute(c, fail).unwrap();
    e.commit(&[Delta::dense(a, 0, vec![1, 2, 3, 4])]).unwrap();
    (e, [a, b, c, s])
}

fn check(fail: RecomputeFn, code: ErrorCode) {
    let (mut e, [a, _b, c, s]) = setup(fail);
    let before = snapshot(&e);
    let stats = e.stats();
    let store_stats = e.store().stats();
    // A reader holds `a` (the failing commit writes it: copy-on-write).
    let pinned = e.store().snapshot(a).unwrap();
    let pinned_bytes = pinned.bytes().to_vec();
    // Two inputs, one written twice: all put back, in order.
    let err = e
        .commit(&[
            Delta::dense(s, 0, vec![3, 3]),
            Delta::dense(a, 1, vec![8, 8]),
            Delta::dense(a, 0, vec![0xFF, 9, 9, 9]),
        ])
        .unwrap_err();
    assert_eq!(err.code, code, "{err}");
    assert!(err.message.contains(&c.to_string()), "{err}");
    assert_eq!(snapshot(&e), before);
    assert_eq!(e.stats(), stats);
    assert_eq!(e.store().stats(), store_stats);
    assert_eq!(pinned.bytes(), pinned_bytes.as_slice());
    drop(pinned);
    // The planned form fails the same way and changes nothing either.
    assert!(e.plan_commit(&[Delta::dense(a, 0, vec![0xFF])]).is_err());
    assert_eq!(snapshot(&e), before);
    // Without the failing input, commits go through.
    e.commit(&[Delta::dense(a, 0, vec![7])]).unwrap();
    assert_eq!(e.store().read(c).unwrap()[0], 7);
}

#[test]
fn an_error_from_a_rust_function_aborts_the_commit() {
    check(
        RecomputeFn::rust(|inp: &RecomputeInputs<'_>, out: &mut [u8]| {
            if inp.inputs[0][0] == 0xFF {
                return Err(Error::new(ErrorCode::InvariantViolation, "no 0xFF"));
            }
            out.copy_from_slice(inp.inputs[0]);
            Ok(())
        }),
        ErrorCode::InvariantViolation,
    );
}

#[test]
fn a_panic_in_a_rust_function_aborts_the_commit() {
    check(
        RecomputeFn::rust(|inp: &RecomputeInputs<'_>, out: &mut [u8]| {
            assert_ne!(inp.inputs[0][0], 0xFF, "deliberate panic");
            out.copy_from_slice(inp.inputs[0]);
            Ok(())
        }),
        ErrorCode::Internal,
    );
}

#[test]
fn a_failing_c_function_aborts_the_commit() {
    // SAFETY: `c_fails_on_ff` reads one input byte and writes one output byte.
    let f = unsafe { RecomputeFn::c_function(c_fails_on_ff, std::ptr::null_mut(), false) };
    check(f, ErrorCode::InvariantViolation);
}

#[test]
fn a_bad_input_delta_aborts_the_commit() {
    let (mut e, [a, b, ..]) = setup(RecomputeFn::Passthrough);
    let before = snapshot(&e);
    // The first delta is fine, the second lies outside its page.
    let store_stats = e.store().stats();
    let err = e
        .commit(&[Delta::dense(a, 0, vec![5]), Delta::dense(b, 3, vec![1, 2])])
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert_eq!(snapshot(&e), before);
    assert_eq!(e.store().stats(), store_stats);
    // A stale compare-and-set aborts too.
    let err = e
        .commit(&[Delta::dense(a, 0, vec![5]).with_expected_epoch(0)])
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::EpochMismatch);
    assert_eq!(snapshot(&e), before);
}

/// An accumulate delta whose element type does not match its page's numeric
/// view aborts the commit at planning (`Engine::commit` does not validate its
/// input deltas a second time when it applies them), and changes nothing.
#[test]
fn a_numeric_delta_against_the_page_view_aborts_the_commit() {
    use mmsb_core::numeric_delta::accumulate;
    use mmsb_core::{DType, NumericView, PageStore, SemiringKind};
    let mut store = PageStore::new();
    let a = store.create_page(16, PageLocation::Cpu).unwrap();
    let b = store.create_page(16, PageLocation::Cpu).unwrap();
    let view = NumericView {
        dtype: DType::F64,
        len: 2,
    };
    store.set_view(a, Some(view)).unwrap();
    let mut e = Engine::with_store(store);
    e.add_edge(a, b, EdgeKind::Data, None).unwrap();
    e.set_recompute(b, RecomputeFn::Passthrough).unwrap();
    e.propagate().unwrap();
    let before = snapshot(&e);
    let wrong = accumulate::<f32>(a, SemiringKind::PlusTimes, 0, &[1.0]).unwrap();
    let err = e.commit(&[Delta::dense(b, 0, vec![5]), wrong]).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument, "{err}");
    assert_eq!(snapshot(&e), before);
    // The matching type goes through, and the wave sees it.
    let right = accumulate::<f64>(a, SemiringKind::PlusTimes, 0, &[2.5]).unwrap();
    e.commit(&[right]).unwrap();
    let got = e.store().read(b).unwrap();
    assert_eq!(got[..8], 2.5f64.to_le_bytes());
}

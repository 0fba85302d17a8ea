//! A derived delta's provenance, checked field by field against serde_json:
//! the intent parses as JSON and holds the page, the function, its kind (a
//! name with quotes, a backslash and a control character is escaped), the
//! forced flag and the changed parents; the source names the changed parents
//! (the page itself for a forced recompute) and is capped with `+N more`; the
//! delta covers exactly the first to the last changed byte.

use mmsb_core::delta::MAX_SOURCE_LEN;
use mmsb_core::{ByteTransform, Delta, EdgeKind, Engine, PageLocation, RecomputeFn};
use serde_json::json;

fn intent(d: &Delta) -> serde_json::Value {
    serde_json::from_str(d.intent.as_deref().expect("a derived delta has an intent"))
        .expect("the intent is JSON")
}

#[test]
fn intent_and_source_name_the_cause() {
    let mut e = Engine::new();
    let [a, b, c] = [(); 3].map(|_| e.create_page(64, PageLocation::Cpu).unwrap());
    e.add_edge(a, c, EdgeKind::Data, None).unwrap();
    e.add_edge(b, c, EdgeKind::Data, None).unwrap();
    let name: &'static str = "we\"ird\\na\tme\u{1}é";
    let f = e
        .set_recompute(
            c,
            RecomputeFn::Transform(ByteTransform::Map(name, |x| x.wrapping_add(1))),
        )
        .unwrap();
    // The first wave is forced (the function was just set).
    let plan = e.plan_propagate().unwrap();
    let d = &plan.derived()[0];
    assert_eq!(d.source, format!("derived:{c}"));
    assert_eq!(
        intent(d),
        json!({"cause": "propagation", "page": c.get(), "function": f.0,
               "function_kind": name, "forced": true, "changed_parents": []})
    );
    e.apply_commit(&plan).unwrap();
    // A change of `a` only: bytes 5..=9 of the first input change.
    let plan = e
        .plan_commit(&[Delta::dense(a, 5, vec![1, 2, 3, 4, 5])])
        .unwrap();
    let d = &plan.derived()[0];
    assert_eq!(d.source, format!("derived:{a}"));
    assert_eq!(
        intent(d),
        json!({"cause": "propagation", "page": c.get(), "function": f.0,
               "function_kind": name, "forced": false, "changed_parents": [a.get()]})
    );
    assert_eq!((d.offset, d.len), (5, 5));
    e.apply_commit(&plan).unwrap();
    assert_eq!(e.store().read(c).unwrap()[5..10], [2, 3, 4, 5, 6]);
}

#[test]
fn long_cause_lists_are_capped() {
    let mut e = Engine::new();
    let n = 600;
    let parents: Vec<_> = (0..n)
        .map(|_| e.create_page(8, PageLocation::Cpu).unwrap())
        .collect();
    let sink = e.create_page(8, PageLocation::Cpu).unwrap();
    for &p in &parents {
        e.add_edge(p, sink, EdgeKind::Data, None).unwrap();
    }
    e.set_recompute(
        sink,
        RecomputeFn::rust(|inp, out| {
            out.fill(0);
            for i in inp.inputs {
                out[0] = out[0].wrapping_add(i[0]);
            }
            Ok(())
        }),
    )
    .unwrap();
    e.propagate().unwrap();
    let deltas: Vec<Delta> = parents
        .iter()
        .map(|&p| Delta::dense(p, 0, vec![1]))
        .collect();
    let plan = e.plan_commit(&deltas).unwrap();
    let d = plan.derived()[0].clone();
    let it = intent(&d);
    let listed: Vec<u64> = it["changed_parents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(listed, parents.iter().map(|p| p.get()).collect::<Vec<_>>());
    assert!(d.source.len() <= MAX_SOURCE_LEN, "{}", d.source.len());
    let (head, more) = d.source.rsplit_once(",+").expect("capped");
    let shown: Vec<&str> = head.trim_start_matches("derived:").split(',').collect();
    assert_eq!(more, format!("{} more", n - shown.len()));
    for (s, p) in shown.iter().zip(&parents) {
        assert_eq!(*s, p.to_string());
    }
    e.apply_commit(&plan).unwrap();
}

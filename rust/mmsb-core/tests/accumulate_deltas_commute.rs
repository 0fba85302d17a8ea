//! Numeric deltas with a commutative semiring accumulator (`page ⊕= payload`)
//! give the same page in any order, equal to a reference model that folds
//! every delta's masked elements with the semiring's scalar `⊕`: exactly for
//! integer, boolean, min and max semirings; within `2 · k · eps · Σ|v|` for
//! float sums (k deltas). Orders tried: random permutations through the
//! in-memory store, and concurrent committers on one durable store (whose
//! arrival order is whatever the threads make it), which must also reopen to
//! the same bytes from its log.

mod common;
mod semiring_common;

use common::config;
use mmsb_core::dtype::{decode, Element};
use mmsb_core::numeric_delta;
use mmsb_core::semiring::{Semiring, SemiringKind};
use mmsb_core::{
    with_semiring, DType, Delta, Durability, Error, NumericView, Op, PageId, PageLocation,
    PageStore, Store, StoreOptions,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use semiring_common::{close, Domain, TestElem};
use std::sync::Arc;

/// One generated numeric delta and the (element index, value) pairs it adds.
struct Gen<E> {
    delta: Delta,
    entries: Vec<(usize, E)>,
}

fn gen_delta<S: Semiring + Default>(
    rng: &mut StdRng,
    kind: SemiringKind,
    dtype: DType,
    page: PageId,
    n: usize,
) -> Gen<S::Elem>
where
    S::Elem: TestElem + Element,
{
    let first = rng.gen_range(0..n);
    let len = rng.gen_range(1..=n - first);
    let values: Vec<S::Elem> = (0..len)
        .map(|_| S::Elem::draw(rng, kind, Domain::Laws))
        .collect();
    let bytes = mmsb_core::dtype::encode(&values);
    let shape = rng.gen_range(0..3);
    let flags: Vec<bool> = (0..len).map(|_| rng.gen_bool(0.6)).collect();
    let (delta, entries) = match shape {
        0 => (
            numeric_delta::accumulate_bytes(page, kind, dtype, first as u64, bytes, None),
            values
                .iter()
                .enumerate()
                .map(|(i, &v)| (first + i, v))
                .collect(),
        ),
        1 => (
            numeric_delta::accumulate_bytes(page, kind, dtype, first as u64, bytes, Some(&flags)),
            values
                .iter()
                .enumerate()
                .filter(|(i, _)| flags[*i])
                .map(|(i, &v)| (first + i, v))
                .collect(),
        ),
        _ => {
            let entries: Vec<(u64, S::Elem)> = values
                .iter()
                .enumerate()
                .filter(|(i, _)| flags[*i])
                .map(|(i, &v)| (i as u64, v))
                .collect();
            let mut d =
                numeric_delta::accumulate_sparse(page, kind, first as u64, len as u64, &entries);
            // Bool pages take the u8 element type under their own dtype.
            if let Ok(d) = d.as_mut() {
                d.accumulator = mmsb_core::Accumulator::Semiring { kind, dtype };
            }
            (
                d,
                entries
                    .iter()
                    .map(|&(i, v)| (first + i as usize, v))
                    .collect(),
            )
        }
    };
    Gen {
        delta: delta.expect("generated numeric delta is valid"),
        entries,
    }
}

fn check_pair<S: Semiring + Default>(
    kind: SemiringKind,
    dtype: DType,
    seed: u64,
) -> Result<(), String>
where
    S::Elem: TestElem + Element,
{
    let s = S::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let n = rng.gen_range(1..300usize);
    let size = dtype.size() as usize;
    let init: Vec<S::Elem> = (0..n)
        .map(|_| S::Elem::draw(&mut rng, kind, Domain::Laws))
        .collect();
    let k = rng.gen_range(2..8);
    let page = PageId(1);
    let gens: Vec<Gen<S::Elem>> = (0..k)
        .map(|_| gen_delta::<S>(&mut rng, kind, dtype, page, n))
        .collect();
    // The model: each delta's entries folded into the initial values, in generation order.
    let mut model = init.clone();
    let mut mag = vec![0f64; n];
    for g in &gens {
        for &(i, v) in &g.entries {
            model[i] = s.add(model[i], v);
            mag[i] += v.to_f64().abs();
        }
    }
    let exact = s.properties().exact;
    for round in 0..3 {
        let mut st = PageStore::new();
        let id = st
            .create_page((n * size + 8) as u64, PageLocation::Cpu)
            .map_err(|e| e.to_string())?;
        assert_eq!(id, page);
        st.set_view(
            id,
            Some(NumericView {
                dtype,
                len: n as u64,
            }),
        )
        .map_err(|e| e.to_string())?;
        st.apply_delta(&Delta::dense(id, 0, mmsb_core::dtype::encode(&init)))
            .map_err(|e| e.to_string())?;
        let mut order: Vec<usize> = (0..gens.len()).collect();
        if round > 0 {
            order.shuffle(&mut rng);
        }
        for &i in &order {
            st.apply_delta(&gens[i].delta)
                .map_err(|e| format!("apply: {e}"))?;
        }
        let got: Vec<S::Elem> = decode(&st.read(id).map_err(|e| e.to_string())?[..n * size])
            .map_err(|e| e.to_string())?;
        for i in 0..n {
            let slack = if exact {
                0.0
            } else {
                2.0 * k as f64 * S::Elem::EPS * (mag[i] + init[i].to_f64().abs())
            };
            if !close(got[i], model[i], slack) {
                return Err(format!(
                    "element {i} is {:?}, the model says {:?} (order {order:?})",
                    got[i], model[i]
                ));
            }
        }
    }
    Ok(())
}

fn pairs() -> Vec<(SemiringKind, DType)> {
    SemiringKind::ALL
        .into_iter()
        .flat_map(|k| k.dtypes().into_iter().map(move |d| (k, d)))
        .collect()
}

proptest! {
    #![proptest_config(config(16))]

    #[test]
    fn accumulate_deltas_give_the_model_in_any_order(seed in any::<u64>()) {
        for (k, d) in pairs() {
            let r = with_semiring!(k, d, |S| Ok::<_, Error>(check_pair::<S>(k, d, seed)))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            r.map_err(|m| TestCaseError::fail(format!("{} over {}: {m}", k.name(), d.name())))?;
        }
    }
}

#[test]
fn concurrent_committers_of_counter_increments_sum_exactly_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || StoreOptions {
        durability: Durability::Buffered {
            max_delay: std::time::Duration::from_millis(2),
        },
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(dir.path(), opts()).unwrap());
    let n = 64usize;
    let r = store
        .commit(vec![Op::CreatePage {
            size: (n * 8) as u64,
            location: PageLocation::Cpu,
        }])
        .unwrap();
    let page = r.created[0];
    store
        .commit(vec![Op::SetView {
            page,
            view: Some(NumericView {
                dtype: DType::I64,
                len: n as u64,
            }),
        }])
        .unwrap();
    let threads = 4;
    let per_thread = 50;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(100 + t);
                let mut sums = vec![0i64; n];
                for _ in 0..per_thread {
                    let first = rng.gen_range(0..n);
                    let len = rng.gen_range(1..=n - first);
                    let v: Vec<i64> = (0..len).map(|_| rng.gen_range(-1000..1000)).collect();
                    let flags: Vec<bool> = (0..len).map(|_| rng.gen_bool(0.5)).collect();
                    for i in 0..len {
                        if flags[i] {
                            sums[first + i] += v[i];
                        }
                    }
                    let d = numeric_delta::accumulate_masked(
                        page,
                        SemiringKind::PlusTimes,
                        first as u64,
                        &v,
                        &flags,
                    )
                    .unwrap();
                    store.commit(vec![Op::Delta(d)]).unwrap();
                }
                sums
            })
        })
        .collect();
    let mut want = vec![0i64; n];
    for h in handles {
        for (w, s) in want.iter_mut().zip(h.join().unwrap()) {
            *w += s;
        }
    }
    let got: Vec<i64> = decode(&store.read(page).unwrap()).unwrap();
    assert_eq!(got, want);
    let Ok(store) = Arc::try_unwrap(store) else {
        panic!("the threads are done, nothing else holds the store")
    };
    store.close().unwrap();
    let reopened = Store::open(dir.path(), opts()).unwrap();
    let again: Vec<i64> = decode(&reopened.read(page).unwrap()).unwrap();
    assert_eq!(
        again, want,
        "the log replays numeric deltas to the same page"
    );
}

#[test]
fn concurrent_or_and_writers_reach_the_union_of_their_flags() {
    let store = Arc::new(Store::in_memory());
    let n = 200usize;
    let page = store
        .commit(vec![Op::CreatePage {
            size: n as u64,
            location: PageLocation::Cpu,
        }])
        .unwrap()
        .created[0];
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(t);
                let mut mine = vec![false; n];
                for _ in 0..30 {
                    let i = rng.gen_range(0..n);
                    mine[i] = true;
                    let d = numeric_delta::accumulate_bytes(
                        page,
                        SemiringKind::OrAnd,
                        DType::Bool,
                        i as u64,
                        vec![rng.gen_range(1..=255)],
                        None,
                    )
                    .unwrap();
                    store.commit(vec![Op::Delta(d)]).unwrap();
                }
                mine
            })
        })
        .collect();
    let mut want = vec![0u8; n];
    for h in handles {
        for (w, m) in want.iter_mut().zip(h.join().unwrap()) {
            *w |= u8::from(m);
        }
    }
    assert_eq!(store.read(page).unwrap(), want);
}

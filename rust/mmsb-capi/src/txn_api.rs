//! Transactions on a durable store: begin, read, write deltas, commit, abort.
//!
//! A transaction handle (`MmsbTxn`) refers to its store by handle, like a
//! commit builder, so closing the store is never held up by a transaction
//! (later calls on the transaction then fail with `MMSB_ERR_INVALID_HANDLE`).
//! Reads see one consistent state (a conflict at a read is reported at once),
//! writes are buffered, and `mmsb_txn_commit` validates the pages the
//! transaction read and wrote: if another commit changed one of them it
//! returns `MMSB_ERR_TRANSACTION_CONFLICT` (retryable) and leaves no trace.
//! Commit and abort *finish* the transaction; every later call on it but
//! `mmsb_txn_free` is `MMSB_ERR_INVALID_ARGUMENT`. To retry, free it and begin
//! a new one (the Julia `with_transaction` does this). See `docs/transactions.md`.

use crate::delta_api::MmsbDelta;
use crate::ffi_util::{c_str, call, need_out, out, slice_mut};
use crate::handle::{self, lock, Object, TAG_TXN};
use crate::page_api::MmsbPageId;
use crate::store_api::MmsbStore;
use mmsb_core::{Error, ErrorCode, PageId, Result, TxnBuffer};
use std::ffi::c_char;
use std::sync::{Arc, Mutex};

/// A transaction handle (0 is null).
pub type MmsbTxn = u64;

/// A transaction: its store (by handle) and its buffers.
pub(crate) struct Txn {
    store: u64,
    buf: TxnBuffer,
}

/// Transaction counters of a durable store (`mmsb_txn_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MmsbTxnStats {
    /// Transactions begun (each retry counts).
    pub begun: u64,
    /// Transactions committed (read-only ones included).
    pub committed: u64,
    /// Attempts that failed with a conflict (at a read or at commit).
    pub conflicts: u64,
    /// Transactions aborted (explicitly, freed unfinished, or by a failed commit).
    pub aborted: u64,
    /// Retries made by the Rust `with_transaction` (the C ABI's callers retry themselves).
    pub retries: u64,
}

fn txn(t: MmsbTxn) -> Result<Arc<Mutex<Txn>>> {
    match handle::get(t, TAG_TXN)? {
        Object::Txn(x) => Ok(x),
        _ => Err(Error::new(
            ErrorCode::Internal,
            "transaction tag on a non-transaction",
        )),
    }
}

/// Runs `f` on the transaction and its store.
fn with_txn<R>(
    t: MmsbTxn,
    f: impl FnOnce(&mut TxnBuffer, &mmsb_core::Store) -> Result<R>,
) -> Result<R> {
    let x = txn(t)?;
    let mut g = lock(&x)?;
    let s = handle::durable(g.store)?;
    f(&mut g.buf, &s)
}

/// Begins a transaction on the durable store `store` and writes its handle
/// into `*out_txn`. Free it with `mmsb_txn_free`.
///
/// # Safety
/// `out_txn` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_txn_begin(store: MmsbStore, out_txn: *mut MmsbTxn) -> i32 {
    call(|| {
        need_out(out_txn, "out_txn")?;
        let s = handle::durable(store)?;
        let h = handle::insert(Object::Txn(Arc::new(Mutex::new(Txn {
            store,
            buf: TxnBuffer::begin(&s),
        }))));
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_txn, h, "out_txn") }
    })
}

/// Copies `len` bytes of the page, starting at `offset`, as the transaction
/// sees it (the version it read, with its own buffered deltas applied) into
/// `buf`. The first read of a page adds it to the read set; if a page read
/// earlier has changed since, this fails with `MMSB_ERR_TRANSACTION_CONFLICT`.
///
/// # Safety
/// `buf` is null (only with `len` 0) or valid for writing `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mmsb_txn_read(
    txn: MmsbTxn,
    page: MmsbPageId,
    offset: u64,
    buf: *mut u8,
    len: u64,
) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let dst = unsafe { slice_mut(buf, len, "buf")? };
        let bytes = with_txn(txn, |b, s| b.read(s, PageId(page)))?;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= bytes.len() as u64)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "read {offset}+{len} lies outside page {page} ({} bytes)",
                    bytes.len()
                ))
            })?;
        dst.copy_from_slice(&bytes[offset as usize..end as usize]);
        Ok(())
    })
}

/// The page's epoch as the transaction read it (reading it if not yet read).
///
/// # Safety
/// `out_epoch` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_txn_page_epoch(
    txn: MmsbTxn,
    page: MmsbPageId,
    out_epoch: *mut u64,
) -> i32 {
    call(|| {
        need_out(out_epoch, "out_epoch")?;
        let e = with_txn(txn, |b, s| b.page(s, PageId(page)).map(|p| p.epoch()))?;
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_epoch, e, "out_epoch") }
    })
}

/// Buffers "apply this delta" (copied: the delta handle stays the caller's).
/// Validated against its page now; applied only if the transaction commits.
///
/// # Safety
/// None beyond passing handle values (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_txn_write_delta(txn: MmsbTxn, delta: MmsbDelta) -> i32 {
    call(|| {
        let d = lock(&*handle::delta(delta)?)?.clone();
        with_txn(txn, |b, s| b.write(s, d))
    })
}

/// Sets the intent recorded with the commit: a NUL-terminated JSON document,
/// stored on every delta of the commit that has no intent of its own.
///
/// # Safety
/// `json` is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn mmsb_txn_set_intent(txn: MmsbTxn, json: *const c_char) -> i32 {
    call(|| {
        // SAFETY: caller contract above.
        let j = unsafe { c_str(json, "json")? }.to_owned();
        with_txn(txn, |b, _| b.set_intent(j))
    })
}

/// Commits the transaction and writes the commit's LSN into `*out_lsn` (for a
/// transaction that only read: the LSN it was validated at; nothing is logged).
/// A conflict is `MMSB_ERR_TRANSACTION_CONFLICT` (retryable: free the
/// transaction and run it again) and leaves no trace. Either way the
/// transaction is finished.
///
/// # Safety
/// `out_lsn` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_txn_commit(txn: MmsbTxn, out_lsn: *mut u64) -> i32 {
    call(|| {
        need_out(out_lsn, "out_lsn")?;
        let r = with_txn(txn, |b, s| b.commit(s))?;
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_lsn, r.lsn, "out_lsn") }
    })
}

/// Aborts the transaction: its buffered writes are dropped, nothing reached
/// the store. A finished transaction is left as it is.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_txn_abort(txn: MmsbTxn) -> i32 {
    call(|| {
        with_txn(txn, |b, s| {
            b.abort(s);
            Ok(())
        })
    })
}

/// Frees a transaction handle, aborting it if it is still open.
///
/// # Safety
/// None beyond passing a handle value (checked).
#[no_mangle]
pub unsafe extern "C" fn mmsb_txn_free(txn: MmsbTxn) -> i32 {
    call(|| {
        if let Object::Txn(x) = handle::remove(txn, TAG_TXN)? {
            let mut g = lock(&x)?;
            if !g.buf.is_finished() {
                // The store may be closed already; then there is nothing to count.
                if let Ok(s) = handle::durable(g.store) {
                    g.buf.abort(&s);
                }
            }
        }
        Ok(())
    })
}

/// Writes the durable store's transaction counters into `*out_stats`.
///
/// # Safety
/// `out_stats` is null or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn mmsb_txn_stats(store: MmsbStore, out_stats: *mut MmsbTxnStats) -> i32 {
    call(|| {
        need_out(out_stats, "out_stats")?;
        let st = handle::durable(store)?.transaction_stats();
        let v = MmsbTxnStats {
            begun: st.begun,
            committed: st.committed,
            conflicts: st.conflicts,
            aborted: st.aborted,
            retries: st.retries,
        };
        // SAFETY: caller contract above; checked non-null.
        unsafe { out(out_stats, v, "out_stats") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable_api::{mmsb_store_open, mmsb_store_options_default, MmsbStoreOptions};
    use crate::store_api::mmsb_store_close;

    fn rc(r: i32) -> Option<ErrorCode> {
        ErrorCode::from_i32(r)
    }

    #[test]
    fn commit_conflict_and_free_through_the_abi() {
        let mut o = MmsbStoreOptions::default();
        let mut st = 0u64;
        let path = std::ffi::CString::new("unused-in-memory").unwrap();
        // SAFETY: valid out-pointers and a NUL-terminated path.
        unsafe {
            assert_eq!(mmsb_store_options_default(&mut o), 0);
            o.durability = crate::durable_api::MMSB_DURABILITY_NONE;
            assert_eq!(mmsb_store_open(path.as_ptr(), &o, &mut st), 0);
        }
        let s = handle::durable(st).unwrap();
        let page = s
            .commit(vec![mmsb_core::Op::CreatePage {
                size: 8,
                location: mmsb_core::PageLocation::Cpu,
            }])
            .unwrap()
            .created[0];
        let d = handle::insert(Object::Delta(Arc::new(Mutex::new(
            mmsb_core::Delta::dense(page, 0, vec![7]),
        ))));
        let (mut t, mut lsn, mut buf) = (0u64, 0u64, [0u8; 8]);
        // SAFETY: valid out-pointers and buffers.
        unsafe {
            assert_eq!(mmsb_txn_begin(st, &mut t), 0);
            assert_eq!(mmsb_txn_read(t, page.0, 0, buf.as_mut_ptr(), 8), 0);
            assert_eq!(mmsb_txn_write_delta(t, d), 0);
            assert_eq!(mmsb_txn_read(t, page.0, 0, buf.as_mut_ptr(), 1), 0);
            assert_eq!(buf[0], 7);
            // A concurrent commit changes the page: conflict, no trace.
            s.commit(vec![mmsb_core::Op::Delta(mmsb_core::Delta::dense(
                page,
                1,
                vec![1],
            ))])
            .unwrap();
            let before = s.lsn();
            assert_eq!(
                rc(mmsb_txn_commit(t, &mut lsn)),
                Some(ErrorCode::TransactionConflict)
            );
            assert_eq!(s.lsn(), before);
            assert_eq!(
                rc(mmsb_txn_commit(t, &mut lsn)),
                Some(ErrorCode::InvalidArgument)
            );
            assert_eq!(mmsb_txn_free(t), 0);
            assert_eq!(rc(mmsb_txn_free(t)), Some(ErrorCode::InvalidHandle));
            // Again, without interference.
            assert_eq!(mmsb_txn_begin(st, &mut t), 0);
            assert_eq!(mmsb_txn_write_delta(t, d), 0);
            assert_eq!(mmsb_txn_commit(t, &mut lsn), 0);
            assert_eq!(lsn, before + 1);
            assert_eq!(mmsb_txn_free(t), 0);
            let mut stats = MmsbTxnStats::default();
            assert_eq!(mmsb_txn_stats(st, &mut stats), 0);
            assert_eq!((stats.begun, stats.committed, stats.conflicts), (2, 1, 1));
            // A transaction outliving its store fails cleanly.
            assert_eq!(mmsb_txn_begin(st, &mut t), 0);
            drop(s);
            assert_eq!(mmsb_store_close(st), 0);
            assert_eq!(
                rc(mmsb_txn_commit(t, &mut lsn)),
                Some(ErrorCode::InvalidHandle)
            );
            assert_eq!(mmsb_txn_free(t), 0);
            handle::remove(d, handle::TAG_DELTA).unwrap();
        }
    }
}

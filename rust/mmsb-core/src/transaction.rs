//! Optimistic, serializable transactions over the durable store.
//!
//! A [`Transaction`] reads pages, buffers writes, and commits only if nothing
//! it read or wrote changed in between. Nothing is locked while it runs:
//!
//! * **Read** ([`Transaction::read`], [`Transaction::page`]). The first read of a
//!   page takes the page (an `Arc` clone, no byte copy) under the commit lock and
//!   records its *epoch* in the read set. Under the same lock it re-checks the
//!   epochs of every page read or written before: if one moved, the view would
//!   no longer be one state, and the read fails at once with the retryable
//!   [`ErrorCode::TransactionConflict`]. So every read of a live transaction
//!   comes from one consistent state (the one at its latest first-read), and
//!   code inside a transaction never sees, say, money that exists twice. Later
//!   reads of the same page return the same version, with the transaction's
//!   own buffered writes applied on top.
//! * **Write** ([`Transaction::write`], [`Transaction::push_op`]). Deltas and
//!   other [`Op`]s are validated against the page's size and buffered; a page
//!   written but not read joins the *write set* with the epoch it had when it
//!   was first written.
//! * **Commit** ([`Transaction::commit`]). The ops go to
//!   [`Store::commit_guarded`] with the read and write sets: under the commit
//!   lock, before anything is logged, every page must still be at its recorded
//!   epoch. Then the commit is logged and applied like any other (one commit
//!   group, one LSN; immediate-mode propagation runs inside it). Otherwise it
//!   fails with `TransactionConflict`, and nothing reached the log or the pages:
//!   the LSN and the log bytes are unchanged.
//!   A transaction that only read commits without logging anything: the
//!   epochs are checked, and the receipt names the LSN it was validated at.
//! * **Abort** ([`Transaction::abort`], or dropping it): the buffers are dropped.
//!
//! **Why this is serializable.** A page's epoch moves with every commit that
//! changes a byte of it, so equal epochs mean equal bytes. At the moment of
//! commit (under the lock) every page the transaction read is as it was when
//! read, so running the whole transaction at that one instant would read the
//! same values and write the same deltas: committed transactions are
//! equivalent to running serially in LSN order. What is *not* versioned are
//! page metadata, numeric views and dependency edges (they do not move an
//! epoch): concurrent changes to them are last-writer-wins (an edge that
//! would close a cycle still fails the commit with `Cycle`).
//!
//! **Retry.** [`Store::with_transaction`] runs a closure in a transaction and
//! commits it, retrying on `TransactionConflict` (and `EpochMismatch`, a
//! compare-and-set delta inside the transaction that lost a race) with
//! exponential backoff and jitter, through [`retry_with`], up to
//! [`TXN_RETRY`]'s attempts. Any other error aborts and is returned.
//!
//! **Starvation.** Optimistic validation alone can starve a transaction:
//! under high contention a short rival can commit between every read and
//! commit of a longer one, retry after retry. So after [`STARVATION_ATTEMPTS`]
//! failed attempts, `with_transaction` runs each further attempt *alone*: it
//! raises a flag and holds the store's transaction gate from `begin` to
//! commit, and every other commit that sees the flag waits at the gate before
//! it takes the commit lock. Commits already past the gate can still make
//! that attempt conflict once, but no new ones start, so it soon succeeds.
//! Without starvation the gate costs each commit one relaxed atomic load.
//!
//! **Intent.** [`Transaction::set_intent`] attaches a JSON document saying why
//! the transaction ran. At commit it is stored as the intent of every delta of
//! the commit that has none of its own, so the log records it with the commit
//! group (no new record type, no format change); the log reader, replay and
//! page history return it with each delta. A transaction without deltas logs
//! no intent.
//!
//! **Detached form.** [`TxnBuffer`] is the same state without a borrow of the
//! store, its methods taking the store as an argument: what the C ABI keeps
//! behind a transaction handle.

use crate::apply;
use crate::commit::Op;
use crate::delta::Delta;
use crate::durable_store::{CommitReceipt, Store};
use crate::error::{Error, ErrorCode, Result};
use crate::page::Page;
use crate::page_id::PageId;
use crate::page_store::PageStore;
use crate::propagation::CommitReport;
use crate::retry::{retry_with, RetryPolicy};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The retry policy of [`Store::with_transaction`]: 100 attempts, sleeps from
/// 10 us doubling to at most 5 ms, jittered.
pub const TXN_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 100,
    first_delay: Duration::from_micros(10),
    max_delay: Duration::from_millis(5),
};

/// Failed attempts after which [`Store::with_transaction`] runs a transaction
/// alone (see the module docs, "Starvation").
pub const STARVATION_ATTEMPTS: u32 = 4;

thread_local! {
    /// Whether this thread holds a store's transaction gate (its own commits
    /// must not wait at the gate they hold).
    static HOLDS_GATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The transaction gate of a store (see the module docs, "Starvation").
#[derive(Debug, Default)]
pub(crate) struct TxnGate {
    starving: std::sync::atomic::AtomicUsize,
    gate: std::sync::Mutex<()>,
}

/// Clears the gate state of [`TxnGate::hold`] even if its closure panics.
struct GateHeld<'a>(&'a TxnGate);

impl Drop for GateHeld<'_> {
    fn drop(&mut self) {
        HOLDS_GATE.with(|h| h.set(false));
        self.0.starving.fetch_sub(1, Ordering::AcqRel);
    }
}

impl TxnGate {
    /// Called by every commit before the commit lock: waits while a
    /// starving transaction holds the gate (returns at once otherwise).
    pub(crate) fn pass(&self) {
        if self.starving.load(Ordering::Acquire) == 0 || HOLDS_GATE.with(|h| h.get()) {
            return;
        }
        drop(self.gate.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Runs `f` holding the gate: commits of other threads that arrive
    /// meanwhile wait until it returns.
    pub(crate) fn hold<R>(&self, f: impl FnOnce() -> R) -> R {
        self.starving.fetch_add(1, Ordering::AcqRel);
        let lock = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        HOLDS_GATE.with(|h| h.set(true));
        let held = GateHeld(self);
        let r = f();
        drop(held);
        drop(lock);
        r
    }
}

/// Checks that every `(page, epoch)` of `guard` is current in `state`.
///
/// A page that no longer exists, or whose epoch moved, is a
/// [`ErrorCode::TransactionConflict`] naming it.
pub fn check_epochs(state: &PageStore, guard: &[(PageId, u64)]) -> Result<()> {
    check_epochs_iter(state, guard.iter().copied())
}

fn check_epochs_iter(
    state: &PageStore,
    guard: impl IntoIterator<Item = (PageId, u64)>,
) -> Result<()> {
    for (id, epoch) in guard {
        match state.page(id) {
            Ok(p) if p.epoch() == epoch => {}
            Ok(p) => {
                return Err(Error::new(
                    ErrorCode::TransactionConflict,
                    format!(
                        "{id} moved from epoch {epoch} to {} since the transaction read it",
                        p.epoch()
                    ),
                ))
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorCode::TransactionConflict,
                    format!("{id} was deleted since the transaction read it"),
                ))
            }
        }
    }
    Ok(())
}

/// Transaction counters of one store (all since it was opened).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxnStats {
    /// Transactions begun (each retry attempt counts).
    pub begun: u64,
    /// Transactions committed (read-only ones included).
    pub committed: u64,
    /// Attempts that failed with `TransactionConflict` (at a read or at commit).
    pub conflicts: u64,
    /// Transactions aborted (explicitly, by dropping, or by a failed commit).
    pub aborted: u64,
    /// Retries made by `with_transaction`.
    pub retries: u64,
}

/// The store's transaction counters (atomics; see [`TxnStats`]).
#[derive(Debug, Default)]
pub(crate) struct TxnCounters {
    begun: AtomicU64,
    committed: AtomicU64,
    conflicts: AtomicU64,
    aborted: AtomicU64,
    retries: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A transaction's state without a borrow of its store (the C ABI's form).
/// Every method takes the store it was begun on. See the module docs.
#[derive(Debug)]
pub struct TxnBuffer {
    /// LSN of the state the reads come from (set at each first read).
    view_lsn: Option<u64>,
    /// Pages read: the version read (its epoch is the read-set entry).
    reads: BTreeMap<PageId, Page>,
    /// Pages written but not read: epoch at first write.
    writes: BTreeMap<PageId, u64>,
    ops: Vec<Op>,
    intent: Option<String>,
    finished: bool,
}

impl TxnBuffer {
    /// Begins a transaction on `store`.
    pub fn begin(store: &Store) -> TxnBuffer {
        bump(&store.txn_counters.begun);
        TxnBuffer {
            view_lsn: None,
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
            ops: Vec::new(),
            intent: None,
            finished: false,
        }
    }

    fn check_active(&self) -> Result<()> {
        if self.finished {
            return Err(Error::invalid(
                "the transaction has already committed or aborted",
            ));
        }
        Ok(())
    }

    /// The read and write sets as `(page, epoch)` pairs, ascending by page.
    pub fn guard(&self) -> Vec<(PageId, u64)> {
        let mut g: Vec<(PageId, u64)> = self
            .reads
            .iter()
            .map(|(&id, p)| (id, p.epoch()))
            .chain(self.writes.iter().map(|(&id, &e)| (id, e)))
            .collect();
        g.sort_unstable();
        g
    }

    /// The LSN of the state every read so far comes from (the last commit
    /// before the latest first read, at which all earlier reads were still
    /// current); `None` before the first read.
    pub fn view_lsn(&self) -> Option<u64> {
        self.view_lsn
    }

    /// The page as this transaction sees it, *without* its own buffered writes.
    pub fn page(&mut self, store: &Store, id: PageId) -> Result<Page> {
        self.check_active()?;
        if let Some(p) = self.reads.get(&id) {
            return Ok(p.clone());
        }
        let (reads, writes) = (&self.reads, &self.writes);
        let page = store.read_with_lsn(|state, lsn| -> Result<(Page, u64)> {
            let read = reads.iter().map(|(&p, pg)| (p, pg.epoch()));
            let written = writes.iter().map(|(&p, &e)| (p, e));
            check_epochs_iter(state, read.chain(written))?;
            Ok((state.page(id)?.clone(), lsn))
        });
        let page = match page {
            Ok((p, lsn)) => {
                self.view_lsn = Some(lsn);
                p
            }
            Err(e) => {
                if e.code == ErrorCode::TransactionConflict {
                    bump(&store.txn_counters.conflicts);
                }
                return Err(e);
            }
        };
        if let Some(&e) = self.writes.get(&id) {
            if e != page.epoch() {
                bump(&store.txn_counters.conflicts);
                return Err(Error::new(
                    ErrorCode::TransactionConflict,
                    format!(
                        "{id} moved from epoch {e} to {} since the transaction wrote it",
                        page.epoch()
                    ),
                ));
            }
            self.writes.remove(&id);
        }
        self.reads.insert(id, page.clone());
        Ok(page)
    }

    /// A copy of the page's bytes as this transaction sees them: the version
    /// it read, with its own buffered deltas applied in order.
    pub fn read(&mut self, store: &Store, id: PageId) -> Result<Vec<u8>> {
        let page = self.page(store, id)?;
        let mut bytes = page.bytes().to_vec();
        for op in &self.ops {
            if let Op::Delta(d) = op {
                if d.page == id {
                    let r = d.offset as usize..(d.offset + d.len) as usize;
                    let dst = bytes.get_mut(r).ok_or_else(|| {
                        Error::new(
                            ErrorCode::Internal,
                            "a buffered delta lies outside its page",
                        )
                    })?;
                    apply::apply(dst, d)?;
                }
            }
        }
        Ok(bytes)
    }

    /// Buffers a delta (validated against its page now; applied at commit).
    pub fn write(&mut self, store: &Store, delta: Delta) -> Result<()> {
        self.check_active()?;
        let size = if let Some(p) = self.reads.get(&delta.page) {
            p.size()
        } else {
            let (size, epoch) =
                store.read_with(|s| s.page(delta.page).map(|p| (p.size(), p.epoch())))?;
            self.writes.entry(delta.page).or_insert(epoch);
            size
        };
        delta.validate(size)?;
        self.ops.push(Op::Delta(delta));
        Ok(())
    }

    /// Buffers any other operation (create or delete a page, metadata, view).
    /// An op on an existing page puts it in the write set; ops are validated in
    /// full at commit.
    pub fn push_op(&mut self, store: &Store, op: Op) -> Result<()> {
        self.check_active()?;
        let page = match &op {
            Op::Delta(d) => return self.write(store, d.clone()),
            // Graph edits are checked at commit (a cycle fails it) but not
            // versioned: like metadata, they do not join the write set.
            Op::CreatePage { .. } | Op::AddEdge { .. } | Op::RemoveEdge { .. } => None,
            Op::DeletePage(id) => Some(*id),
            Op::SetMetadata { page, .. }
            | Op::RemoveMetadata { page, .. }
            | Op::SetView { page, .. } => Some(*page),
        };
        if let Some(id) = page {
            if !self.reads.contains_key(&id) && !self.writes.contains_key(&id) {
                let epoch = store.read_with(|s| s.page(id).map(Page::epoch))?;
                self.writes.insert(id, epoch);
            }
        }
        self.ops.push(op);
        Ok(())
    }

    /// Sets the intent recorded with the commit (a JSON document, at most
    /// [`MAX_INTENT_LEN`](crate::delta::MAX_INTENT_LEN) bytes).
    pub fn set_intent(&mut self, json: impl Into<String>) -> Result<()> {
        self.check_active()?;
        let json = json.into();
        // Validate through the delta rules, so the log accepts it later.
        Delta::dense(PageId(1), 0, vec![0]).with_intent(json.clone())?;
        self.intent = Some(json);
        Ok(())
    }

    /// The number of buffered operations.
    pub fn op_count(&self) -> usize {
        self.ops.len()
    }

    /// Commits: see the module docs. The transaction is finished afterwards,
    /// whatever the outcome.
    pub fn commit(&mut self, store: &Store) -> Result<CommitReceipt> {
        self.check_active()?;
        self.finished = true;
        let guard = self.guard();
        let ops = std::mem::take(&mut self.ops);
        // Unpin the versions read, so the commit writes the pages in place
        // instead of copying them (copy-on-write).
        self.reads.clear();
        self.writes.clear();
        let r = if ops.is_empty() {
            store.read_with_lsn(|state, lsn| {
                check_epochs(state, &guard).map(|()| CommitReceipt {
                    lsn,
                    timestamp_ns: 0,
                    created: Vec::new(),
                    propagation: CommitReport::default(),
                })
            })
        } else {
            let ops = match &self.intent {
                None => ops,
                Some(intent) => ops
                    .into_iter()
                    .map(|op| match op {
                        Op::Delta(mut d) if d.intent.is_none() => {
                            d.intent = Some(intent.clone());
                            Op::Delta(d)
                        }
                        other => other,
                    })
                    .collect(),
            };
            store.commit_guarded(ops, &guard)
        };
        match &r {
            Ok(_) => bump(&store.txn_counters.committed),
            Err(e) => {
                if e.code == ErrorCode::TransactionConflict {
                    bump(&store.txn_counters.conflicts);
                }
                bump(&store.txn_counters.aborted);
            }
        }
        r
    }

    /// Aborts: drops the buffers. Nothing reached the store.
    pub fn abort(&mut self, store: &Store) {
        if !self.finished {
            self.finished = true;
            self.ops.clear();
            self.reads.clear();
            self.writes.clear();
            bump(&store.txn_counters.aborted);
        }
    }

    /// Whether the transaction has committed or aborted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// A transaction on a store. See the module docs.
#[derive(Debug)]
pub struct Transaction<'s> {
    store: &'s Store,
    buf: TxnBuffer,
}

impl Transaction<'_> {
    /// The page as this transaction sees it, without its own buffered writes.
    pub fn page(&mut self, id: PageId) -> Result<Page> {
        self.buf.page(self.store, id)
    }

    /// A copy of the page's bytes as this transaction sees them (own writes applied).
    pub fn read(&mut self, id: PageId) -> Result<Vec<u8>> {
        self.buf.read(self.store, id)
    }

    /// Buffers a delta.
    pub fn write(&mut self, delta: Delta) -> Result<()> {
        self.buf.write(self.store, delta)
    }

    /// Buffers any other operation.
    pub fn push_op(&mut self, op: Op) -> Result<()> {
        self.buf.push_op(self.store, op)
    }

    /// Sets the intent recorded with the commit (JSON).
    pub fn set_intent(&mut self, json: impl Into<String>) -> Result<()> {
        self.buf.set_intent(json)
    }

    /// The read and write sets as `(page, epoch)` pairs.
    pub fn guard(&self) -> Vec<(PageId, u64)> {
        self.buf.guard()
    }

    /// The LSN of the state every read so far comes from; `None` before the first read.
    pub fn view_lsn(&self) -> Option<u64> {
        self.buf.view_lsn()
    }

    /// Commits, or fails with `TransactionConflict` leaving no trace.
    pub fn commit(mut self) -> Result<CommitReceipt> {
        self.buf.commit(self.store)
    }

    /// Aborts (dropping the transaction does the same).
    pub fn abort(mut self) {
        self.buf.abort(self.store);
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        self.buf.abort(self.store);
    }
}

/// What [`Store::with_transaction`] returns on success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed<R> {
    /// The closure's result.
    pub value: R,
    /// The commit's receipt.
    pub receipt: CommitReceipt,
    /// Attempts it took (1 = no conflict).
    pub attempts: u32,
}

fn is_conflict(e: &Error) -> bool {
    matches!(
        e.code,
        ErrorCode::TransactionConflict | ErrorCode::EpochMismatch
    )
}

impl Store {
    /// Begins a transaction.
    pub fn begin(&self) -> Transaction<'_> {
        Transaction {
            store: self,
            buf: TxnBuffer::begin(self),
        }
    }

    /// Runs `f` in a transaction and commits it, retrying conflicts under [`TXN_RETRY`].
    pub fn with_transaction<R>(
        &self,
        f: impl FnMut(&mut Transaction<'_>) -> Result<R>,
    ) -> Result<Committed<R>> {
        self.with_transaction_policy(TXN_RETRY, f)
    }

    /// [`Store::with_transaction`] under a given retry policy.
    pub fn with_transaction_policy<R>(
        &self,
        policy: RetryPolicy,
        mut f: impl FnMut(&mut Transaction<'_>) -> Result<R>,
    ) -> Result<Committed<R>> {
        retry_with(policy, true, is_conflict, |attempt| {
            if attempt > 1 {
                bump(&self.txn_counters.retries);
            }
            let mut run = || {
                let mut txn = self.begin();
                let value = f(&mut txn)?;
                let receipt = txn.commit()?;
                Ok(Committed {
                    value,
                    receipt,
                    attempts: attempt,
                })
            };
            if attempt > STARVATION_ATTEMPTS {
                self.txn_gate.hold(run)
            } else {
                run()
            }
        })
    }

    /// The store's transaction counters.
    pub fn transaction_stats(&self) -> TxnStats {
        let c = &self.txn_counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TxnStats {
            begun: l(&c.begun),
            committed: l(&c.committed),
            conflicts: l(&c.conflicts),
            aborted: l(&c.aborted),
            retries: l(&c.retries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::PageLocation;

    fn store_with_pages(n: usize) -> (Store, Vec<PageId>) {
        let s = Store::in_memory();
        let ops = (0..n)
            .map(|_| Op::CreatePage {
                size: 8,
                location: PageLocation::Cpu,
            })
            .collect();
        let ids = s.commit(ops).unwrap().created;
        (s, ids)
    }

    #[test]
    fn reads_see_own_writes_and_commit_applies_them() {
        let (s, ids) = store_with_pages(1);
        let mut t = s.begin();
        t.write(Delta::dense(ids[0], 2, vec![5, 6])).unwrap();
        assert_eq!(t.read(ids[0]).unwrap(), vec![0, 0, 5, 6, 0, 0, 0, 0]);
        assert_eq!(
            s.read(ids[0]).unwrap(),
            vec![0; 8],
            "nothing visible before commit"
        );
        let r = t.commit().unwrap();
        assert_eq!(r.lsn, 2);
        assert_eq!(s.read(ids[0]).unwrap(), vec![0, 0, 5, 6, 0, 0, 0, 0]);
    }

    #[test]
    fn a_read_page_changed_by_another_commit_is_a_conflict() {
        let (s, ids) = store_with_pages(2);
        let mut t = s.begin();
        t.read(ids[0]).unwrap();
        t.write(Delta::dense(ids[1], 0, vec![1])).unwrap();
        s.commit(vec![Op::Delta(Delta::dense(ids[0], 0, vec![9]))])
            .unwrap();
        let lsn = s.lsn();
        let e = t.commit().unwrap_err();
        assert_eq!(e.code, ErrorCode::TransactionConflict);
        assert!(e.is_retryable());
        assert_eq!(s.lsn(), lsn);
        assert_eq!(s.read(ids[1]).unwrap(), vec![0; 8]);
        let st = s.transaction_stats();
        assert_eq!((st.conflicts, st.aborted, st.committed), (1, 1, 0));
    }

    #[test]
    fn an_inconsistent_read_fails_early() {
        let (s, ids) = store_with_pages(2);
        let mut t = s.begin();
        t.read(ids[0]).unwrap();
        s.commit(vec![Op::Delta(Delta::dense(ids[0], 0, vec![9]))])
            .unwrap();
        assert_eq!(
            t.read(ids[1]).unwrap_err().code,
            ErrorCode::TransactionConflict
        );
        // Re-reading a page already read returns the same version.
        assert_eq!(t.read(ids[0]).unwrap(), vec![0; 8]);
    }

    #[test]
    fn the_view_moves_forward_while_earlier_reads_stay_current() {
        let (s, ids) = store_with_pages(3);
        let mut t = s.begin();
        assert_eq!(t.view_lsn(), None);
        t.read(ids[0]).unwrap();
        assert_eq!(t.view_lsn(), Some(1));
        // A commit to a page the transaction has not read does not disturb it.
        s.commit(vec![Op::Delta(Delta::dense(ids[2], 0, vec![4]))])
            .unwrap();
        assert_eq!(t.read(ids[2]).unwrap()[0], 4);
        assert_eq!(t.view_lsn(), Some(2));
        t.read(ids[1]).unwrap();
        assert_eq!(t.commit().unwrap().lsn, 2);
    }

    #[test]
    fn read_only_transactions_commit_without_logging() {
        let (s, ids) = store_with_pages(1);
        let mut t = s.begin();
        t.read(ids[0]).unwrap();
        assert_eq!(t.commit().unwrap().lsn, 1);
        assert_eq!(s.lsn(), 1);
    }

    #[test]
    fn with_transaction_retries_a_conflict_and_then_commits() {
        let (s, ids) = store_with_pages(1);
        let mut first = true;
        let c = s
            .with_transaction(|t| {
                let v = t.read(ids[0])?[0];
                if first {
                    first = false;
                    // A concurrent writer sneaks in before this attempt commits.
                    t.store
                        .commit(vec![Op::Delta(Delta::dense(ids[0], 0, vec![10]))])?;
                }
                t.write(Delta::dense(ids[0], 0, vec![v + 1]))?;
                Ok(v)
            })
            .unwrap();
        assert_eq!(c.attempts, 2);
        assert_eq!(c.value, 10);
        assert_eq!(s.read(ids[0]).unwrap()[0], 11);
        assert_eq!(s.transaction_stats().retries, 1);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let (s, ids) = store_with_pages(1);
        let mut calls = 0;
        let e = s
            .with_transaction(|t| {
                calls += 1;
                t.write(Delta::dense(ids[0], 7, vec![1, 2]))
            })
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(calls, 1);
    }

    #[test]
    fn intent_is_attached_to_deltas_without_one() {
        let (s, ids) = store_with_pages(1);
        let mut t = s.begin();
        assert!(t.set_intent("not json").is_err());
        t.set_intent(r#"{"why":"test"}"#).unwrap();
        t.write(Delta::dense(ids[0], 0, vec![1])).unwrap();
        t.commit().unwrap();
        // In memory only: the intent is checked in the log by the integration tests.
        assert_eq!(s.read(ids[0]).unwrap()[0], 1);
    }
}

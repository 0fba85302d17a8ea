# Transaction: optimistic, serializable transactions on a durable store.
#
# A transaction reads pages (each at one consistent state), buffers deltas,
# and commits only if no page it read or wrote changed in between; otherwise
# the commit throws `TransactionConflictError` (retryable) and leaves no trace.
# `with_transaction(f, store)` runs `f(txn)` and commits, retrying conflicts
# with backoff. See docs/transactions.md.

"""
    Transaction

An open transaction on a durable [`Store`](@ref), from [`begin_transaction`](@ref)
or given to the function of [`with_transaction`](@ref). Read with
`read_page(txn, page)` and [`page_epoch`](@ref), write with `apply!(txn, delta)`,
attach an intent with `set_intent!(txn, json)`, finish with
[`commit!`](@ref) or [`abort!`](@ref), release with `close(txn)` (which aborts an
unfinished one; the finalizer does the same).
"""
mutable struct Transaction
    handle::UInt64  # a LibMMSB.MmsbTxn; 0 once closed
    store::Store

    Transaction(handle::UInt64, store::Store) = finalizer(finalize_txn, new(handle, store))
end

# Finalizers must not throw or yield: ignore the status.
function finalize_txn(t::Transaction)
    h = t.handle
    t.handle = 0
    h == 0 || LibMMSB.mmsb_txn_free(h)
    return nothing
end

function live_txn(t::Transaction)
    t.handle == 0 && throw(InvalidHandleError("the transaction was already closed"))
    return t.handle
end

"""
    begin_transaction(store) -> Transaction

Begins a transaction on the durable store `store`. Prefer
[`with_transaction`](@ref), which commits, retries conflicts and closes.
"""
function begin_transaction(s::Store)
    h = Ref{LibMMSB.MmsbTxn}(0)
    check(LibMMSB.mmsb_txn_begin(s.handle, h))
    return Transaction(h[], s)
end

"""
    read_page(txn, page) -> Vector{UInt8}
    read_page(txn, page, offset, len) -> Vector{UInt8}

The page as the transaction sees it: the version it first read (all of a
transaction's reads come from one consistent state), with its own buffered
deltas applied. Throws [`TransactionConflictError`](@ref) if a page read earlier
has changed since (the transaction cannot commit; retry it).
"""
function read_page(t::Transaction, page::PageRef)
    return read_page(t, page, 0, page_info(t.store, page).size)
end

function read_page(t::Transaction, page::PageRef, offset::Integer, len::Integer)
    buf = Vector{UInt8}(undef, Int(to_u64(len, "length")))
    check(LibMMSB.mmsb_txn_read(live_txn(t), page_value(page), to_u64(offset, "offset"),
                                buf, UInt64(length(buf))))
    return buf
end

"""
    page_epoch(txn, page) -> UInt64

The page's epoch as the transaction read it (reading it if it has not yet).
"""
function page_epoch(t::Transaction, page::PageRef)
    e = Ref{UInt64}(0)
    check(LibMMSB.mmsb_txn_page_epoch(live_txn(t), page_value(page), e))
    return e[]
end

"""
    apply!(txn, delta)

Buffers `delta` in the transaction (a copy: `delta` stays yours). It is
validated against its page now and applied only if the transaction commits.
"""
function apply!(t::Transaction, d::Delta)
    check(LibMMSB.mmsb_txn_write_delta(live_txn(t), d.handle))
    return nothing
end

"""
    set_intent!(txn, json) -> txn

Records why the transaction ran: a JSON document stored in the log with the
commit (on each of its deltas that has no intent of its own).
"""
function set_intent!(t::Transaction, json::AbstractString)
    check(LibMMSB.mmsb_txn_set_intent(live_txn(t), c_string(json, "intent")))
    return t
end

"""
    commit!(txn) -> UInt64

Commits the transaction and returns the commit's LSN (for a transaction that
only read: the LSN it was validated at; nothing is logged). Throws
[`TransactionConflictError`](@ref) if a page it read or wrote has changed since,
leaving no trace. The transaction is finished either way.
"""
function commit!(t::Transaction)
    lsn = Ref{UInt64}(0)
    check(LibMMSB.mmsb_txn_commit(live_txn(t), lsn))
    return lsn[]
end

"""
    abort!(txn)

Drops the transaction's buffered writes; nothing reached the store.
"""
function abort!(t::Transaction)
    check(LibMMSB.mmsb_txn_abort(live_txn(t)))
    return nothing
end

"""
    close(txn)

Releases the transaction, aborting it if it is still open. Closing twice is a no-op.
"""
function Base.close(t::Transaction)
    h = t.handle
    t.handle = 0
    h == 0 || check(LibMMSB.mmsb_txn_free(h))
    return nothing
end

"""
    with_transaction(f, store; attempts=100, first_delay=1e-5, max_delay=0.005) -> f's result

Runs `f(txn)` in a new [`Transaction`](@ref) on `store` and commits it. On a
[`TransactionConflictError`](@ref) or [`EpochMismatchError`](@ref) — thrown by a
read inside `f` or by the commit — it waits (exponential backoff with jitter)
and runs `f` again in a fresh transaction, at most `attempts` times in all; the
last conflict propagates. Any other exception aborts and propagates at once.
`f` must be safe to run again: do every read inside it.

```julia
with_transaction(store) do txn
    a = reinterpret(Int64, read_page(txn, acct_a, 0, 8))[1]
    b = reinterpret(Int64, read_page(txn, acct_b, 0, 8))[1]
    set_intent!(txn, "{\\"op\\":\\"transfer\\",\\"amount\\":5}")
    apply!(txn, Delta(acct_a, 0, reinterpret(UInt8, [a - 5])))
    apply!(txn, Delta(acct_b, 0, reinterpret(UInt8, [b + 5])))
end
```
"""
function with_transaction(f::Function, s::Store; attempts::Integer = 100,
                          first_delay::Real = 1e-5, max_delay::Real = 0.005)
    attempts >= 1 || throw(InvalidArgumentError("attempts must be at least 1, got $attempts"))
    delays = ExponentialBackOff(; n = attempts - 1, first_delay = first_delay,
                                max_delay = max_delay, factor = 2.0, jitter = 0.5)
    attempt = function ()
        t = begin_transaction(s)
        try
            result = f(t)
            commit!(t)
            return result
        finally
            close(t)
        end
    end
    conflict = (_, e) -> e isa TransactionConflictError || e isa EpochMismatchError
    return retry(attempt; delays = delays, check = conflict)()
end

"""
    transaction_stats(store) -> NamedTuple

Transaction counters of a durable store since it was opened: `begun` (every
attempt), `committed`, `conflicts` (at a read or at commit), `aborted`
(explicitly, closed unfinished, or by a failed commit) and `retries` (by the
Rust `with_transaction`; the Julia one counts as new `begun`).
"""
function transaction_stats(s::Store)
    r = Ref{LibMMSB.MmsbTxnStats}()
    check(LibMMSB.mmsb_txn_stats(s.handle, r))
    x = r[]
    return (begun = Int(x.begun), committed = Int(x.committed), conflicts = Int(x.conflicts),
            aborted = Int(x.aborted), retries = Int(x.retries))
end

# TLog: the durable store — a data directory with a write-ahead log and
# checkpoints. Open, atomic commits, checkpoints, replay to a past LSN or time
# (read-only states), page history, log summary, recovery report.
#
# A durable store is a `Store` like an in-memory one: every page function
# (`read_page`, `page_info`, `list_pages`, `get_metadata`, `borrow_page`,
# `store_stats`) reads it, and every page write (`create_page`,
# `apply_delta!`, `set_metadata!`, ...) on it is a one-operation commit.
# `commit!` groups several operations into one atomic commit.

const DURABILITY = Dict{Symbol,UInt8}(
    :immediate => LibMMSB.MMSB_DURABILITY_IMMEDIATE,
    :buffered => LibMMSB.MMSB_DURABILITY_BUFFERED,
    :none => LibMMSB.MMSB_DURABILITY_NONE,
)

# The C options struct (field order as in the header; checked by scripts/check_julia.py).
const StoreOptionsC = LibMMSB.MmsbStoreOptions

"""
    open_store(dir; durability=:immediate, max_delay_ms=10, segment_bytes=64<<20,
               compression=false, checkpoints_kept=2, recover_past_corruption=false) -> Store
    open_store(f, dir; kwargs...) -> f(store)

Opens (creating if needed) the durable store in directory `dir` and recovers its
state: the newest checkpoint that verifies plus the log after it (see
[`recovery_report`](@ref)). Close it with `close(store)`, or use the do-block
form, which closes it when `f` returns or throws.

* `durability`: `:immediate` (a commit returns once its log frame is synced;
  concurrent commits share one fsync), `:buffered` (synced in the background
  within `max_delay_ms`; a crash may lose that last interval, never part of a
  commit) or `:none` (no files: an in-memory store).
* `segment_bytes`: a log segment is rolled past this size.
* `compression`: compress log frames.
* `checkpoints_kept`: checkpoints kept; older ones, and the log they make
  unnecessary, are deleted (so older LSNs can no longer be replayed).
* `recover_past_corruption`: accept corruption inside the log, dropping what
  follows it (reported by [`recovery_report`](@ref)); otherwise opening such a
  store throws [`CorruptionError`](@ref) or [`ChecksumMismatchError`](@ref).

A directory that cannot be created throws [`IoError`](@ref); bad options throw
[`InvalidArgumentError`](@ref).
"""
function open_store(dir::AbstractString; durability::Symbol = :immediate,
                    max_delay_ms::Integer = 10, segment_bytes::Integer = 64 << 20,
                    compression::Bool = false, checkpoints_kept::Integer = 2,
                    recover_past_corruption::Bool = false)
    mode = get(DURABILITY, durability, nothing)
    mode === nothing && throw(InvalidArgumentError(
        "unknown durability :$durability; use :immediate, :buffered or :none"))
    opts = Ref(StoreOptionsC(
        mode,
        to_u64(max_delay_ms, "max_delay_ms"),
        to_u64(segment_bytes, "segment_bytes"),
        compression,
        to_u64(checkpoints_kept, "checkpoints_kept"),
        recover_past_corruption,
    ))
    h = Ref{LibMMSB.MmsbStore}(0)
    check(LibMMSB.mmsb_store_open(c_string(dir, "dir"), opts, h))
    return Store(h[], Val(:owned))
end

function open_store(f::Function, dir::AbstractString; kwargs...)
    store = open_store(dir; kwargs...)
    try
        return f(store)
    finally
        close(store)
    end
end

"""
    store_lsn(store_or_state) -> UInt64

The LSN of the last commit of a durable store, or the LSN a
[`ReadOnlyState`](@ref) was replayed to. An in-memory store (no log) throws
[`InvalidHandleError`](@ref).
"""
function store_lsn(s::AbstractStore)
    r = Ref{UInt64}(0)
    check(LibMMSB.mmsb_store_lsn(s.handle, r))
    return r[]
end

"""
    durable_stats(store) -> NamedTuple

A durable store's counters: `lsn` (last commit), `durable_lsn` (highest LSN
known to be on disk), `commits` and `log_bytes` (since open), `log_syncs`
(fsyncs since open; fewer than commits under concurrent load).
"""
function durable_stats(s::Store)
    r = Ref{LibMMSB.MmsbDurableStats}()
    check(LibMMSB.mmsb_store_durable_stats(s.handle, r))
    x = r[]
    return (lsn = x.lsn, durable_lsn = x.durable_lsn, commits = Int(x.commits),
            log_bytes = Int(x.log_bytes), log_syncs = Int(x.log_syncs))
end

"""
    sync!(store)

Makes every commit so far durable, whatever the durability mode.
"""
function sync!(s::Store)
    check(LibMMSB.mmsb_store_sync(s.handle))
    return nothing
end

# ------------------------------------------------------------------ commits

"""
    Commit

A commit being built inside [`commit!`](@ref). Add operations with
[`create_page!`](@ref), [`apply!`](@ref), `delete_page!(c, page)`,
`set_metadata!(c, page, key, value)`, `remove_metadata!(c, page, key)` and
`set_view!(c, page, T, len)` / `set_view!(c, page, nothing)`. Operations are
validated when the commit executes, all together.
"""
mutable struct Commit
    handle::UInt64  # a LibMMSB.MmsbCommit; 0 once freed
end

function free_commit(c::Commit)
    h = c.handle
    c.handle = 0
    h == 0 || check(LibMMSB.mmsb_commit_free(h))
    return nothing
end

"""
    commit!(f, store) -> (lsn = UInt64, created = Vector{PageId})
    commit!(store, deltas::Delta...) -> (lsn = UInt64, created = PageId[])

Runs `f(c)` to collect operations into a [`Commit`](@ref) `c`, then commits them
atomically: all are logged and applied, or (on any error) none, and the store is
unchanged. Returns the commit's LSN and the ids of the pages it created, in
operation order. If `f` throws, nothing is committed.

```julia
r = commit!(store) do c
    create_page!(c, 4096)
    apply!(c, Delta(page, 0, UInt8[1, 2, 3]))
    set_metadata!(c, page, "owner", "sim")
end
r.lsn, r.created
```

A bad operation throws the typed error naming it (e.g. [`InvalidArgumentError`](@ref)
for a range outside a page, [`EpochMismatchError`](@ref) for a stale
compare-and-set). An empty commit throws [`InvalidArgumentError`](@ref). The
second form commits the given deltas.
"""
function commit!(f::Function, s::Store)
    h = Ref{LibMMSB.MmsbCommit}(0)
    check(LibMMSB.mmsb_commit_begin(s.handle, h))
    c = Commit(h[])
    try
        f(c)
        lsn = Ref{UInt64}(0)
        check(LibMMSB.mmsb_commit_execute(c.handle, lsn))
        n = Ref{UInt64}(0)
        check(LibMMSB.mmsb_commit_created_pages(c.handle, C_NULL, 0, n))
        ids = Vector{UInt64}(undef, Int(n[]))
        check(LibMMSB.mmsb_commit_created_pages(c.handle, ids, UInt64(length(ids)), n))
        return (lsn = lsn[], created = PageId.(ids))
    finally
        free_commit(c)
    end
end

function commit!(s::Store, deltas::Delta...)
    return commit!(s) do c
        for d in deltas
            apply!(c, d)
        end
    end
end

function live_commit(c::Commit)
    c.handle == 0 && throw(InvalidHandleError("the commit was already executed or abandoned"))
    return c.handle
end

"""
    create_page!(c::Commit, size; location=:cpu)

Adds "create a zeroed page of `size` bytes" to the commit. Its id is in the
`created` field of what [`commit!`](@ref) returns.
"""
function create_page!(c::Commit, size::Integer; location::Symbol = :cpu)
    loc = get(LOCATIONS, location, nothing)
    loc === nothing && throw(InvalidArgumentError(
        "unknown page location :$location; use :cpu, :gpu or :unified"))
    check(LibMMSB.mmsb_commit_create_page(live_commit(c), to_u64(size, "page size"), loc))
    return nothing
end

"""
    apply!(c::Commit, delta::Delta)

Adds "apply `delta`" to the commit. The commit keeps a copy: `delta` stays
yours (close it when done) and later changes to it do not affect the commit.
"""
function apply!(c::Commit, d::Delta)
    check(LibMMSB.mmsb_commit_add_delta(live_commit(c), d.handle))
    return nothing
end

function delete_page!(c::Commit, page::PageRef)
    check(LibMMSB.mmsb_commit_delete_page(live_commit(c), page_value(page)))
    return nothing
end

function set_metadata!(c::Commit, page::PageRef, key::AbstractString, value::AbstractVector{UInt8})
    v = Vector{UInt8}(value)
    check(LibMMSB.mmsb_commit_set_metadata(live_commit(c), page_value(page), c_string(key, "key"),
                                           v, UInt64(length(v))))
    return nothing
end
set_metadata!(c::Commit, page::PageRef, key::AbstractString, value::AbstractString) =
    set_metadata!(c, page, key, Vector{UInt8}(codeunits(String(value))))

function remove_metadata!(c::Commit, page::PageRef, key::AbstractString)
    check(LibMMSB.mmsb_commit_remove_metadata(live_commit(c), page_value(page), c_string(key, "key")))
    return nothing
end

function set_view!(c::Commit, page::PageRef, T::Type, len::Integer)
    check(LibMMSB.mmsb_commit_set_view(live_commit(c), page_value(page), dtype_code(T),
                                       to_u64(len, "view length")))
    return nothing
end

function set_view!(c::Commit, page::PageRef, ::Nothing)
    check(LibMMSB.mmsb_commit_set_view(live_commit(c), page_value(page), LibMMSB.MMSB_DTYPE_NONE, 0))
    return nothing
end

# ------------------------------------------------------------------ checkpoints, replay

"""
    checkpoint!(store) -> NamedTuple

Writes a checkpoint of the current state (at a commit boundary), deletes old
checkpoints beyond `checkpoints_kept` and the log they make unnecessary.
Returns `lsn`, `timestamp_ns`, `pages` and `file_bytes`. A store opened with
`durability=:none` throws [`UnsupportedError`](@ref).
"""
function checkpoint!(s::Store)
    r = Ref{LibMMSB.MmsbCheckpointInfo}()
    check(LibMMSB.mmsb_checkpoint(s.handle, r))
    x = r[]
    return (lsn = x.lsn, timestamp_ns = x.timestamp_ns, pages = Int(x.pages),
            file_bytes = Int(x.file_bytes))
end

"""
    ReadOnlyState

A past state of a durable store, rebuilt by [`replay`](@ref). Read it with the
page functions (`read_page`, `page_info`, `list_pages`, `get_metadata`,
`borrow_page`); every write (`create_page`, `apply_delta!`, ...) throws
[`ReadOnlyError`](@ref). [`store_lsn`](@ref) and [`state_timestamp`](@ref) say
which commit it is at. Free it with `close(state)` or the do-block form of
`replay`; a finalizer frees a forgotten one.
"""
mutable struct ReadOnlyState <: AbstractStore
    handle::UInt64  # a LibMMSB.MmsbState; 0 once closed

    ReadOnlyState(handle::UInt64, ::Val{:owned}) = finalizer(finalize_state, new(handle))
end

function finalize_state(s::ReadOnlyState)
    h = s.handle
    s.handle = 0
    h == 0 || LibMMSB.mmsb_state_free(h)
    return nothing
end

function Base.close(s::ReadOnlyState)
    h = s.handle
    h == 0 && return nothing
    s.handle = 0
    check(LibMMSB.mmsb_state_free(h))
    return nothing
end

Base.isopen(s::ReadOnlyState) = s.handle != 0

function Base.show(io::IO, s::ReadOnlyState)
    if isopen(s)
        print(io, "MMSB.ReadOnlyState(lsn=", store_lsn(s), ")")
    else
        print(io, "MMSB.ReadOnlyState(closed)")
    end
end

"""
    state_timestamp(state::ReadOnlyState) -> UInt64

The timestamp (ns since the Unix epoch) of the commit the state was replayed
to (0 for the empty state at LSN 0).
"""
function state_timestamp(s::ReadOnlyState)
    lsn = Ref{UInt64}(0)
    ts = Ref{UInt64}(0)
    check(LibMMSB.mmsb_state_info(s.handle, lsn, ts))
    return ts[]
end

"""
    replay(store; lsn) -> ReadOnlyState
    replay(store; time) -> ReadOnlyState
    replay(f, store; lsn or time) -> f(state)

Rebuilds a past state from the checkpoints and log on disk, read-only: the
state right after commit `lsn` (0 = empty), or after the last commit stamped at
or before `time` (ns since the Unix epoch). Give exactly one. An LSN that is not
retained (deleted with its checkpoint and log, or beyond the last commit)
throws [`NotFoundError`](@ref). The do-block form frees the state afterwards.
"""
function replay(s::Store; lsn::Union{Nothing,Integer} = nothing,
                time::Union{Nothing,Integer} = nothing)
    (lsn === nothing) == (time === nothing) &&
        throw(InvalidArgumentError("replay needs exactly one of `lsn` and `time`"))
    h = Ref{LibMMSB.MmsbState}(0)
    if lsn !== nothing
        check(LibMMSB.mmsb_replay_to_lsn(s.handle, to_u64(lsn, "lsn"), h))
    else
        check(LibMMSB.mmsb_replay_to_time(s.handle, to_u64(time, "time"), h))
    end
    return ReadOnlyState(h[], Val(:owned))
end

function replay(f::Function, s::Store; kwargs...)
    state = replay(s; kwargs...)
    try
        return f(state)
    finally
        close(state)
    end
end

# ------------------------------------------------------------------ log, recovery, history

"""
    log_summary(store) -> NamedTuple

The log on disk now: `segments`, `commits`, `records`, `first_lsn`,
`last_lsn`, `stored_bytes`, `raw_bytes` (after decompression),
`compressed_frames` and `compression_ratio` (raw over stored).
"""
function log_summary(s::Store)
    r = Ref{LibMMSB.MmsbLogSummary}()
    check(LibMMSB.mmsb_log_summary(s.handle, r))
    x = r[]
    return (segments = Int(x.segments), commits = Int(x.commits), records = Int(x.records),
            first_lsn = x.first_lsn, last_lsn = x.last_lsn, stored_bytes = Int(x.stored_bytes),
            raw_bytes = Int(x.raw_bytes), compressed_frames = Int(x.compressed_frames),
            compression_ratio = x.compression_ratio)
end

"""
    recovery_report(store) -> NamedTuple

What recovery found when the store was opened: `lsn`, `timestamp_ns`,
`commits_replayed`, `bytes_replayed`, `torn_tail_bytes` (cut from the end of
the log), `corruption_bytes_dropped` (with `recover_past_corruption`),
`checkpoint_lsn` (`nothing` without a checkpoint), `checkpoints_rejected` and
`elapsed_ns`.
"""
function recovery_report(s::Store)
    r = Ref{LibMMSB.MmsbRecoveryReport}()
    check(LibMMSB.mmsb_recovery_report(s.handle, r))
    x = r[]
    return (lsn = x.lsn, timestamp_ns = x.timestamp_ns, commits_replayed = Int(x.commits_replayed),
            bytes_replayed = Int(x.bytes_replayed), torn_tail_bytes = Int(x.torn_tail_bytes),
            corruption_bytes_dropped = Int(x.corruption_bytes_dropped),
            checkpoint_lsn = x.has_checkpoint ? x.checkpoint_lsn : nothing,
            checkpoints_rejected = Int(x.checkpoints_rejected), elapsed_ns = x.elapsed_ns)
end

"""
    HistoryEntry

One delta in a page's history: `lsn` and `timestamp_ns` of its commit, and the
`delta` itself (a [`Delta`](@ref) you own; close it when done, or let the
finalizer free it).
"""
struct HistoryEntry
    lsn::UInt64
    timestamp_ns::UInt64
    delta::Delta
end

"""
    page_history(store, page; from=1, to=store_lsn(store)) -> Vector{HistoryEntry}

The deltas `page` received in commits `from:to` (inclusive), in LSN order,
straight from the log. A range that starts before the retained log throws
[`NotFoundError`](@ref); `from > to` throws [`InvalidArgumentError`](@ref).
"""
function page_history(s::Store, page::PageRef; from::Integer = 1,
                      to::Union{Nothing,Integer} = nothing)
    last = to === nothing ? store_lsn(s) : to_u64(to, "to")
    h = Ref{LibMMSB.MmsbHistory}(0)
    check(LibMMSB.mmsb_page_history(s.handle, page_value(page), to_u64(from, "from"), last, h))
    try
        n = Ref{UInt64}(0)
        check(LibMMSB.mmsb_history_count(h[], n))
        entries = HistoryEntry[]
        for i in 0:(Int(n[]) - 1)
            lsn = Ref{UInt64}(0)
            ts = Ref{UInt64}(0)
            d = Ref{LibMMSB.MmsbDelta}(0)
            check(LibMMSB.mmsb_history_entry(h[], UInt64(i), lsn, ts, d))
            push!(entries, HistoryEntry(lsn[], ts[], Delta(d[], Val(:owned))))
        end
        return entries
    finally
        check(LibMMSB.mmsb_history_free(h[]))
    end
end

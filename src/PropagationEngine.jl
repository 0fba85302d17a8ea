# PropagationEngine: the dependency graph and propagation on a durable store —
# dependencies between pages, recompute functions (Julia functions, or raw C
# function pointers from @cfunction), immediate and deferred modes, waves,
# batch routing, events, stale / invalidated marks, graph queries.
#
# Graph edits are commits: logged, replayed, restored at reopening. A cycle is
# refused with a `CycleError` whose `path` names it. Recompute functions and
# subscriptions are not logged: register them again after reopening
# (`reattach = true` keeps the logged derived pages until an input changes).
# See docs/propagation.md.

const EDGE_KINDS = Dict{Symbol,UInt8}(
    :data => LibMMSB.MMSB_EDGE_DATA,
    :control => LibMMSB.MMSB_EDGE_CONTROL,
    :gpu_sync => LibMMSB.MMSB_EDGE_GPU_SYNC,
    :compiler => LibMMSB.MMSB_EDGE_COMPILER,
)

const EVENT_KINDS = Dict{Symbol,UInt8}(
    :page_changed => LibMMSB.MMSB_EVENT_PAGE_CHANGED,
    :stale => LibMMSB.MMSB_EVENT_STALE,
    :gpu_sync => LibMMSB.MMSB_EVENT_GPU_SYNC,
    :invalidated => LibMMSB.MMSB_EVENT_INVALIDATED,
)

function edge_kind(kind::Symbol; any_ok::Bool = false)
    any_ok && kind === :any && return LibMMSB.MMSB_EDGE_ANY
    k = get(EDGE_KINDS, kind, nothing)
    k === nothing && throw(InvalidArgumentError(
        "unknown edge kind :$kind; use :data, :control, :gpu_sync or :compiler" *
        (any_ok ? " (or :any)" : "")))
    return k
end

# Julia objects handed to the library as user data stay reachable from here
# while registered (the library holds only a raw pointer).
const CALLBACK_ROOTS = Dict{Tuple{UInt64,Symbol,UInt64},Any}()
const CALLBACK_LOCK = ReentrantLock()

function root!(key, obj)
    lock(CALLBACK_LOCK) do
        CALLBACK_ROOTS[key] = obj
    end
    return obj
end

function unroot!(key)
    lock(CALLBACK_LOCK) do
        delete!(CALLBACK_ROOTS, key)
    end
    return nothing
end

"""
    add_dependency!(store, parent, child; kind=:data, weight=nothing) -> UInt64

Adds the edge `parent -> child` in a commit of its own and returns its LSN.
`kind`: `:data` (recompute the child), `:control` (mark it stale), `:gpu_sync`
(schedule a device copy) or `:compiler` (invalidate it, notify subscribers);
`weight`: an optional `Float64` for the semiring layer. An edge that would
close a cycle throws [`CycleError`](@ref) (its `path` names the cycle) and
changes nothing. In immediate mode a new data edge recomputes the child in
the same commit.
"""
function add_dependency!(store::Store, parent::PageRef, child::PageRef;
                         kind::Symbol = :data, weight::Union{Nothing,Real} = nothing)
    lsn = Ref{UInt64}(0)
    check(LibMMSB.mmsb_add_dependency(store.handle, page_value(parent), page_value(child),
                                      edge_kind(kind), weight !== nothing,
                                      Float64(something(weight, 0.0)), lsn))
    return lsn[]
end

"""
    add_dependency!(commit::Commit, parent, child; kind=:data, weight=nothing)

Adds the edge to a commit being built (checked, cycle included, at commit).
"""
function add_dependency!(c::Commit, parent::PageRef, child::PageRef;
                         kind::Symbol = :data, weight::Union{Nothing,Real} = nothing)
    check(LibMMSB.mmsb_commit_add_dependency(live_commit(c), page_value(parent),
                                             page_value(child), edge_kind(kind),
                                             weight !== nothing,
                                             Float64(something(weight, 0.0))))
    return nothing
end

"""
    remove_dependency!(store, parent, child; kind=:data) -> UInt64

Removes the edge in a commit of its own and returns its LSN; a missing edge
throws [`NotFoundError`](@ref).
"""
function remove_dependency!(store::Store, parent::PageRef, child::PageRef; kind::Symbol = :data)
    lsn = Ref{UInt64}(0)
    check(LibMMSB.mmsb_remove_dependency(store.handle, page_value(parent), page_value(child),
                                         edge_kind(kind), lsn))
    return lsn[]
end

"""
    remove_dependency!(commit::Commit, parent, child; kind=:data)

Adds the removal of an edge to a commit being built.
"""
function remove_dependency!(c::Commit, parent::PageRef, child::PageRef; kind::Symbol = :data)
    check(LibMMSB.mmsb_commit_remove_dependency(live_commit(c), page_value(parent),
                                                page_value(child), edge_kind(kind)))
    return nothing
end

# The C entry point of a Julia recompute function: user data is a Ref holding
# the function; `f(out::Vector{UInt8}, inputs::Vector{Vector{UInt8}})` writes
# `out`. An exception fails the commit (an MMSBError keeps its code).
function recompute_trampoline(ud::Ptr{Cvoid}, inputs::Ptr{Ptr{UInt8}}, lens::Ptr{UInt64},
                              n::UInt64, out::Ptr{UInt8}, out_len::UInt64)::Int32
    try
        f = unsafe_pointer_to_objref(ud)[]
        ins = Vector{Vector{UInt8}}(undef, Int(n))
        for i in 1:Int(n)
            ins[i] = unsafe_wrap(Vector{UInt8}, unsafe_load(inputs, i), Int(unsafe_load(lens, i)))
        end
        f(unsafe_wrap(Vector{UInt8}, out, Int(out_len)), ins)
        return Int32(0)
    catch e
        return e isa MMSBError ? errorcode(e) : LibMMSB.MMSB_ERR_INVALID_ARGUMENT
    end
end

"""
    register_recompute!(f, store, page; reattach=false) -> UInt64

Makes `page` a derived page computed by the Julia function
`f(out::Vector{UInt8}, inputs::Vector{Vector{UInt8}})`: `inputs` are the bytes
of the page's data parents in the order their edges were added, `out` holds the
page's current bytes and must be overwritten with the new ones (both views are
valid during the call only). `f` must be deterministic; throwing fails the
commit (an [`MMSBError`](@ref) keeps its code) and nothing changes. It runs on
the committing thread. With `reattach = false` the page is recomputed at the
next wave; `reattach = true` keeps its current (logged) bytes, for registering
the same function again after reopening. Returns the function id.
"""
function register_recompute!(f::Function, store::Store, page::PageRef; reattach::Bool = false)
    key = (store.handle, :recompute, page_value(page))
    box = root!(key, Ref{Any}(f))
    ptr = @cfunction(recompute_trampoline, Int32,
                     (Ptr{Cvoid}, Ptr{Ptr{UInt8}}, Ptr{UInt64}, UInt64, Ptr{UInt8}, UInt64))
    id = Ref{UInt64}(0)
    status = GC.@preserve box LibMMSB.mmsb_register_recompute(
        store.handle, page_value(page), ptr, pointer_from_objref(box), false, reattach, id)
    if status != LibMMSB.MMSB_OK
        unroot!(key)
        check(status)
    end
    return id[]
end

"""
    register_recompute!(store, page, fptr::Ptr{Cvoid}, user_data=C_NULL;
                        thread_safe=false, reattach=false) -> UInt64

Registers a raw C function pointer (`@cfunction`, signature
`Int32 (Ptr{Cvoid}, Ptr{Ptr{UInt8}}, Ptr{UInt64}, UInt64, Ptr{UInt8}, UInt64)`,
see `LibMMSB.MmsbRecomputeFn`) with its user data. The caller keeps both valid
while registered.
"""
function register_recompute!(store::Store, page::PageRef, fptr::Ptr{Cvoid},
                             user_data::Ptr{Cvoid} = C_NULL;
                             thread_safe::Bool = false, reattach::Bool = false)
    id = Ref{UInt64}(0)
    check(LibMMSB.mmsb_register_recompute(store.handle, page_value(page), fptr, user_data,
                                          thread_safe, reattach, id))
    return id[]
end

"""
    clear_recompute!(store, page)

Removes `page`'s recompute function (it keeps its bytes); [`NotFoundError`](@ref) if none.
"""
function clear_recompute!(store::Store, page::PageRef)
    check(LibMMSB.mmsb_clear_recompute(store.handle, page_value(page)))
    unroot!((store.handle, :recompute, page_value(page)))
    return nothing
end

"""
    set_propagation_mode!(store, mode::Symbol)

`:immediate` (every commit runs its wave) or `:deferred` (commits only mark
pages dirty; [`propagate!`](@ref) runs the wave). Not durable.
"""
function set_propagation_mode!(store::Store, mode::Symbol)
    m = mode === :immediate ? LibMMSB.MMSB_PROPAGATION_IMMEDIATE :
        mode === :deferred ? LibMMSB.MMSB_PROPAGATION_DEFERRED :
        throw(InvalidArgumentError("unknown propagation mode :$mode; use :immediate or :deferred"))
    check(LibMMSB.mmsb_set_propagation_mode(store.handle, m))
    return nothing
end

"""
    propagation_mode(store) -> Symbol
"""
function propagation_mode(store::Store)
    m = Ref{UInt8}(0)
    check(LibMMSB.mmsb_get_propagation_mode(store.handle, m))
    return m[] == LibMMSB.MMSB_PROPAGATION_DEFERRED ? :deferred : :immediate
end

"""
    propagate!(store) -> UInt64

Runs one wave for everything pending as a commit of its own; returns the LSN
after it (unchanged if the wave changed nothing).
"""
function propagate!(store::Store)
    lsn = Ref{UInt64}(0)
    check(LibMMSB.mmsb_propagate(store.handle, lsn))
    return lsn[]
end

"""
    recompute_all!(store) -> UInt64

Recomputes every derived page (one wave) and returns the LSN after it.
"""
function recompute_all!(store::Store)
    lsn = Ref{UInt64}(0)
    check(LibMMSB.mmsb_recompute_all(store.handle, lsn))
    return lsn[]
end

"""
    batch_route_deltas!(store, deltas::AbstractVector{Delta}) -> UInt64

Commits all `deltas` (copied) as one commit with one wave, in either mode;
all or nothing. Returns the LSN.
"""
function batch_route_deltas!(store::Store, deltas::AbstractVector{Delta})
    hs = UInt64[d.handle for d in deltas]
    lsn = Ref{UInt64}(0)
    GC.@preserve deltas check(LibMMSB.mmsb_batch_route_deltas(store.handle, hs,
                                                              UInt64(length(hs)), lsn))
    return lsn[]
end

# The C entry point of a Julia event callback.
function event_trampoline(ud::Ptr{Cvoid}, ev::Ptr{LibMMSB.MmsbEvent})::Cvoid
    try
        f = unsafe_pointer_to_objref(ud)[]
        e = unsafe_load(ev)
        kind = e.kind == LibMMSB.MMSB_EVENT_PAGE_CHANGED ? :page_changed :
               e.kind == LibMMSB.MMSB_EVENT_STALE ? :stale :
               e.kind == LibMMSB.MMSB_EVENT_GPU_SYNC ? :gpu_sync : :invalidated
        f((kind = kind, page = PageId(e.page), epoch = e.epoch, cause = PageId(e.cause)))
    catch
        # An exception must not unwind into the library; events are notices.
    end
    return nothing
end

"""
    subscribe(f, store, kind::Symbol) -> UInt64

Calls `f(event)` for every event of `kind` (`:page_changed`, `:stale`,
`:gpu_sync`, `:invalidated`) of every later acknowledged commit, with `event`
a named tuple `(kind, page, epoch, cause)`. Runs on the committing thread,
after the commit, outside the store's lock. Returns the subscription id for
[`unsubscribe!`](@ref).
"""
function subscribe(f::Function, store::Store, kind::Symbol)
    k = get(EVENT_KINDS, kind, nothing)
    k === nothing && throw(InvalidArgumentError(
        "unknown event kind :$kind; use :page_changed, :stale, :gpu_sync or :invalidated"))
    box = Ref{Any}(f)
    ptr = @cfunction(event_trampoline, Cvoid, (Ptr{Cvoid}, Ptr{LibMMSB.MmsbEvent}))
    id = Ref{UInt64}(0)
    GC.@preserve box check(LibMMSB.mmsb_subscribe(store.handle, k, ptr,
                                                  pointer_from_objref(box), id))
    root!((store.handle, :event, id[]), box)
    return id[]
end

"""
    unsubscribe!(store, id) -> Bool

Removes a subscription; returns whether it existed.
"""
function unsubscribe!(store::Store, id::Integer)
    existed = Ref{Bool}(false)
    check(LibMMSB.mmsb_unsubscribe(store.handle, to_u64(id, "subscription"), existed))
    unroot!((store.handle, :event, UInt64(id)))
    return existed[]
end

"""
    is_stale(store, page) -> Bool

Whether a control parent of `page` changed since it was last written (not durable).
"""
function is_stale(store::Store, page::PageRef)
    r = Ref{Bool}(false)
    check(LibMMSB.mmsb_is_stale(store.handle, page_value(page), r))
    return r[]
end

"""
    is_invalidated(store, page) -> Bool

Whether a compiler parent of `page` changed since it was last written (not durable).
"""
function is_invalidated(store::Store, page::PageRef)
    r = Ref{Bool}(false)
    check(LibMMSB.mmsb_is_invalidated(store.handle, page_value(page), r))
    return r[]
end

# Query, allocate, copy (retrying if the answer grew in between).
function query_ids(f::Function)
    n = Ref{UInt64}(0)
    while true
        check(f(Ptr{UInt64}(C_NULL), UInt64(0), n))
        buf = Vector{UInt64}(undef, Int(n[]))
        status = f(buf, UInt64(length(buf)), n)
        status == LibMMSB.MMSB_ERR_BUFFER_TOO_SMALL && continue
        check(status)
        return PageId.(buf[1:Int(n[])])
    end
end

"""
    children(store_or_state, page; kind=:any) -> Vector{PageId}

The children of `page` along edges of `kind` (or every kind), each once.
Works on a [`ReadOnlyState`](@ref) too: the graph at its LSN.
"""
function children(s::Union{Store,ReadOnlyState}, page::PageRef; kind::Symbol = :any)
    k = edge_kind(kind; any_ok = true)
    p = page_value(page)
    return query_ids((buf, cap, n) -> LibMMSB.mmsb_graph_children(s.handle, p, k, buf, cap, n))
end

"""
    parents(store_or_state, page; kind=:any) -> Vector{PageId}

The parents of `page` along edges of `kind`, each once; for `:data`, in the
input order of its recompute function.
"""
function parents(s::Union{Store,ReadOnlyState}, page::PageRef; kind::Symbol = :any)
    k = edge_kind(kind; any_ok = true)
    p = page_value(page)
    return query_ids((buf, cap, n) -> LibMMSB.mmsb_graph_parents(s.handle, p, k, buf, cap, n))
end

"""
    topo_order(store_or_state) -> Vector{PageId}

Every page of the dependency graph, parents before children.
"""
function topo_order(s::Union{Store,ReadOnlyState})
    return query_ids((buf, cap, n) -> LibMMSB.mmsb_graph_topo_order(s.handle, buf, cap, n))
end

"""
    cycle_path(e::CycleError) -> Vector{PageId}

The cycle a refused edge would have closed, `parent -> child -> ... -> parent`.
"""
cycle_path(e::CycleError) = PageId.(e.path)

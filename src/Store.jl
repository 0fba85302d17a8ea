# Store: an open page store, owning one `MmsbStore` handle.

"""
    AbstractStore

Anything whose pages the page functions ([`read_page`](@ref), [`page_info`](@ref),
[`list_pages`](@ref), [`borrow_page`](@ref), ...) read: a [`Store`](@ref) (in
memory or durable) or a [`ReadOnlyState`](@ref) (a replayed past state, whose
writes throw [`ReadOnlyError`](@ref)).
"""
abstract type AbstractStore end

"""
    Store

An open MMSB page store: in memory (`open_store()`) or durable, on a data
directory (`open_store(dir; ...)`, see `TLog.jl`). Create one with [`open_store`](@ref);
release it with `close(store)` or, better, the do-block form
`open_store() do store ... end`. A finalizer closes a store that is garbage
collected while open, but do not rely on it for timely release.

After `close`, every operation on the store throws [`InvalidHandleError`](@ref).
Borrows taken before the close stay readable until their block ends; deltas are
independent of stores and stay valid.
"""
mutable struct Store <: AbstractStore
    handle::UInt64  # a LibMMSB.MmsbStore; 0 once closed

    # Takes ownership of a handle the library just returned.
    Store(handle::UInt64, ::Val{:owned}) = finalizer(finalize_store, new(handle))
end

# Finalizers must not throw or yield: ignore the status (a handle is only ever
# closed once, because `close` zeroes it first).
function finalize_store(s::Store)
    h = s.handle
    s.handle = 0
    h == 0 || LibMMSB.mmsb_store_close(h)
    return nothing
end

"""
    open_store() -> Store
    open_store(f) -> f(store)

Opens a new in-memory store. The second form passes it to `f` and closes it when
`f` returns or throws, returning `f`'s result:

```julia
open_store() do store
    page = create_page(store, 4096)
    ...
end
```
"""
function open_store()
    h = Ref{LibMMSB.MmsbStore}(0)
    check(LibMMSB.mmsb_store_open_memory(h))
    return Store(h[], Val(:owned))
end

function open_store(f::Function)
    store = open_store()
    try
        return f(store)
    finally
        close(store)
    end
end

"""
    close(store::Store)

Closes the store; its handle becomes stale. Closing twice is a no-op.
"""
function Base.close(s::Store)
    h = s.handle
    h == 0 && return nothing
    s.handle = 0
    check(LibMMSB.mmsb_store_close(h))
    return nothing
end

"""
    isopen(store::Store) -> Bool

Whether `close` has not been called on the store.
"""
Base.isopen(s::Store) = s.handle != 0

"""
    store_stats(store::Store) -> NamedTuple

The store's counters: `pages` (alive now), `page_bytes`, `deltas_applied`,
`deltas_noop` (applied but changed nothing), `deltas_rejected` (failed
validation or compare-and-set) and `bytes_written`.
"""
function store_stats(s::Store)
    r = Ref{LibMMSB.MmsbStoreStats}()
    check(LibMMSB.mmsb_store_stats(s.handle, r))
    st = r[]
    return (pages = Int(st.pages), page_bytes = Int(st.page_bytes),
            deltas_applied = Int(st.deltas_applied), deltas_noop = Int(st.deltas_noop),
            deltas_rejected = Int(st.deltas_rejected), bytes_written = Int(st.bytes_written))
end

function Base.show(io::IO, s::Store)
    if isopen(s)
        print(io, "MMSB.Store(handle=0x", string(s.handle; base = 16), ")")
    else
        print(io, "MMSB.Store(closed)")
    end
end

# Allocator: statistics of the page allocator (layer 0) that holds every CPU
# page of every store in this process (see docs/allocator.md).

# One C MmsbAllocStats as a NamedTuple.
function _alloc_stats(x::LibMMSB.MmsbAllocStats)
    return (slot_size = Int(x.slot_size), live_pages = Int(x.live_pages),
            live_bytes = Int(x.live_bytes), reserved_bytes = Int(x.reserved_bytes),
            allocations = Int(x.allocations), frees = Int(x.frees),
            cas_retries = Int(x.cas_retries), slow_path = Int(x.slow_path),
            lock_contended = Int(x.lock_contended))
end

"""
    allocator_stats() -> NamedTuple

Counters of the process-wide page allocator: `totals` (every size class plus
the large path), `large` (pages above 64 KiB, served under a mutex) and
`classes` (one entry per size class, smallest slot size first). Each entry has
`slot_size` (0 for totals and large), `live_pages`, `live_bytes`,
`reserved_bytes` (memory taken from the system), `allocations`, `frees`,
`cas_retries` (contention on the lock-free freelists), `slow_path` (empty
freelist: steal or carve a chunk; every large-page call) and `lock_contended`
(large path). Counters are exact while no thread allocates; otherwise each is a
recent value.

```julia
s = allocator_stats()
s.totals.live_pages == sum(c.live_pages for c in s.classes) + s.large.live_pages
```
"""
function allocator_stats()
    r = Ref{LibMMSB.MmsbAllocStats}()
    check(LibMMSB.mmsb_allocator_stats(r))
    totals = _alloc_stats(r[])
    check(LibMMSB.mmsb_allocator_large_stats(r))
    large = _alloc_stats(r[])
    n = Ref{UInt64}(0)
    check(LibMMSB.mmsb_allocator_class_count(n))
    classes = map(0:(Int(n[]) - 1)) do c
        check(LibMMSB.mmsb_allocator_class_stats(UInt64(c), r))
        _alloc_stats(r[])
    end
    return (totals = totals, large = large, classes = classes)
end

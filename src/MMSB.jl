"""
    MMSB

The Memory-Mapped State Bus: application state kept as pages of bytes that
change only through deltas. The engine is a Rust library (`libmmsb`) reached
through its C ABI.

Layers, low to high (as in HDF5.jl and CUDA.jl):

* [`LibMMSB`](@ref MMSB.LibMMSB): generated from the C header
  (`scripts/gen_libmmsb_jl.py`); one `ccall` per C function, returning the raw
  `Int32` status. Do not edit it by hand.
* The idiomatic API in this module: [`Store`](@ref), pages
  ([`create_page`](@ref), [`read_page`](@ref), [`borrow_page`](@ref), ...) and
  deltas ([`Delta`](@ref), [`apply_delta!`](@ref), [`encode`](@ref), ...),
  semirings over Julia vectors and accumulate deltas (module [`Semiring`](@ref MMSB.Semiring)).
  Every status code is checked and turned into a typed [`MMSBError`](@ref).

# Finding the library
`] build MMSB` builds `libmmsb` with cargo and records its path in
`deps/deps.jl`. Setting the environment variable `MMSB_LIB` to a prebuilt
library overrides that. The path is fixed when the package is precompiled: after
changing `MMSB_LIB`, run `] build MMSB` again (or delete the compile cache).

```julia
using MMSB
open_store() do store
    page = create_page(store, 64)
    d = Delta(page, 8, UInt8[1, 2, 3])
    changed, epoch = apply_delta!(store, d)
    close(d)
    read_page(store, page)[9:11] == [1, 2, 3]
end
```
"""
module MMSB

using Libdl

const DEPS_FILE = joinpath(@__DIR__, "..", "deps", "deps.jl")

if !isempty(get(ENV, "MMSB_LIB", ""))
    const libmmsb = abspath(ENV["MMSB_LIB"])
elseif isfile(DEPS_FILE)
    include_dependency(DEPS_FILE)
    include(DEPS_FILE)  # check_julia: allow-dynamic-include (written by deps/build.jl)
else
    error("MMSB: libmmsb is not built. Run `] build MMSB` (needs cargo) " *
          "or set MMSB_LIB to the path of a prebuilt libmmsb.")
end

include("LibMMSB.jl")
include("Errors.jl")
include("Store.jl")
include("Page.jl")
include("Delta.jl")
include("TLog.jl")
include("Gpu.jl")
include("PropagationEngine.jl")
include("Transaction.jl")
include("Allocator.jl")
include("Semiring.jl")

"""
    library_version() -> VersionNumber

The version of the loaded `libmmsb`.
"""
function library_version()
    major = Ref{UInt32}(0)
    minor = Ref{UInt32}(0)
    patch = Ref{UInt32}(0)
    check(LibMMSB.mmsb_version(major, minor, patch))
    return VersionNumber(major[], minor[], patch[])
end

"""
    live_handles() -> Int

The number of live handles (stores, deltas, borrows) in the library, across all
threads: a leak check. Closed and finalized objects do not count.
"""
function live_handles()
    n = Ref{UInt64}(0)
    check(LibMMSB.mmsb_live_handles(n))
    return Int(n[])
end

function __init__()
    isfile(libmmsb) || error("MMSB: the library $libmmsb does not exist; run `] build MMSB`.")
    env = get(ENV, "MMSB_LIB", "")
    if !isempty(env) && abspath(env) != libmmsb
        @warn "MMSB: MMSB_LIB=$env differs from the library MMSB was precompiled with " *
              "($libmmsb); run `] build MMSB` or remove the compile cache to switch."
    end
    Libdl.dlopen(libmmsb)  # fail here, with the path in the message, if it cannot load
    return nothing
end

export libmmsb, LibMMSB, library_version, live_handles
# Errors.jl
export MMSBError, InvalidArgumentError, NotFoundError, InvalidHandleError, AllocationError,
    IoError, CorruptionError, ChecksumMismatchError, CycleError, TransactionConflictError,
    InvariantViolationError, GpuUnavailableError, GpuError, MemoryPressureError,
    InternalError, EpochMismatchError, UnsupportedError, BufferTooSmallError, NoSpaceError,
    ReadOnlyError, UnknownMMSBError, isretryable, errorcode, with_retry
# Store.jl
export AbstractStore, Store, open_store, store_stats
# Page.jl
export PageId, PageInfo, create_page, delete_page!, page_info, read_page, read_page!,
    list_pages, set_metadata!, get_metadata, remove_metadata!, set_view!, borrow_page
# Delta.jl
export Delta, DeltaInfo, mask_words, sparse_delta, set_source!, set_intent!,
    set_expected_epoch!, apply_delta!, check_delta, encode, decode, decode_all, delta_info
# TLog.jl
export ReadOnlyState, Commit, commit!, create_page!, apply!, checkpoint!, replay, store_lsn,
    state_timestamp, durable_stats, sync!, log_summary, recovery_report, page_history,
    HistoryEntry
# Gpu.jl
export GpuStore, gpu_available, open_gpu_store, migrate_page!, apply_deltas!,
    set_forced_failure!, set_host_copy!, set_graph_replay!, gpu_stats,
    GpuMirror, attach_gpu_mirror, mirror_stats, device_pointer, device_view
# PropagationEngine.jl
export add_dependency!, remove_dependency!, register_recompute!, clear_recompute!,
    set_propagation_mode!, propagation_mode, propagate!, recompute_all!, batch_route_deltas!,
    subscribe, unsubscribe!, is_stale, is_invalidated, children, parents, topo_order, cycle_path
# Transaction.jl
export Transaction, begin_transaction, with_transaction, page_epoch, abort!, transaction_stats
# Allocator.jl
export allocator_stats
# Semiring.jl: the submodule MMSB.Semiring (`using MMSB.Semiring` brings in its names)
export Semiring

end # module MMSB

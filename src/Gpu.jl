# Gpu: GPU stores, whose pages live at :cpu, :gpu or :unified, with a CPU fallback.

"""
    GpuStore

A store of pages in CPU, GPU or unified memory (the `mmsb-gpu` crate, see
`docs/gpu.md`), separate from [`Store`](@ref): its pages have caller-chosen
ids, and batches of deltas are applied on the GPU. Without a usable GPU
everything still works on the CPU: pages asked for at `:gpu` or `:unified` are
placed at `:cpu` ([`create_page`](@ref) returns where), and
[`migrate_page!`](@ref) to the GPU throws [`GpuUnavailableError`](@ref). A
kernel or copy that fails mid-batch finishes on the CPU with identical bytes;
[`gpu_stats`](@ref) counts what happened.

Open one with [`open_gpu_store`](@ref) (do-block form recommended); `close`
releases it. Read pages with [`read_page`](@ref) (a copy); with CUDA.jl loaded,
[`device_view`](@ref) wraps a `:gpu` or `:unified` page as a `CuArray` without
copying ([`device_pointer`](@ref) gives the raw address).
"""
mutable struct GpuStore
    handle::UInt64  # a LibMMSB.MmsbGpuStore; 0 once closed

    # Takes ownership of a handle the library just returned.
    GpuStore(handle::UInt64, ::Val{:owned}) = finalizer(finalize_gpu_store, new(handle))
end

function finalize_gpu_store(s::GpuStore)
    h = s.handle
    s.handle = 0
    h == 0 || LibMMSB.mmsb_gpu_store_close(h)
    return nothing
end

"""
    gpu_available() -> Bool

Whether a usable GPU (CUDA driver, NVRTC and a device) is present. Never throws
for want of one.
"""
function gpu_available()
    r = Ref{Bool}(false)
    check(LibMMSB.mmsb_gpu_available(r))
    return r[]
end

"""
    open_gpu_store(; emulated=false) -> GpuStore
    open_gpu_store(f; emulated=false)

Opens a GPU store on device 0 (a CPU-only store without a GPU). With
`emulated=true` the "device" is host memory running the CPU kernels: the GPU
code paths, including the fallback, without a GPU.
"""
function open_gpu_store(; emulated::Bool = false)
    h = Ref{LibMMSB.MmsbGpuStore}(0)
    check(emulated ? LibMMSB.mmsb_gpu_store_open_emulated(h) : LibMMSB.mmsb_gpu_store_open(h))
    return GpuStore(h[], Val(:owned))
end

function open_gpu_store(f::Function; emulated::Bool = false)
    store = open_gpu_store(; emulated = emulated)
    try
        return f(store)
    finally
        close(store)
    end
end

"""
    close(store::GpuStore)

Closes the store and frees its pages; closing twice is a no-op.
"""
function Base.close(s::GpuStore)
    h = s.handle
    h == 0 && return nothing
    s.handle = 0
    check(LibMMSB.mmsb_gpu_store_close(h))
    return nothing
end

Base.isopen(s::GpuStore) = s.handle != 0

function location_code(location::Symbol)
    loc = get(LOCATIONS, location, nothing)
    loc === nothing && throw(InvalidArgumentError(
        "unknown page location :$location; use :cpu, :gpu or :unified"))
    return loc
end

"""
    create_page(store::GpuStore, page, size; location=:gpu) -> Symbol

Creates the zeroed page `page` (a non-zero id you choose) of `size` bytes at
`location` and returns where it was placed (`:cpu` when there is no device).
"""
function create_page(s::GpuStore, page::PageRef, size::Integer; location::Symbol = :gpu)
    at = Ref{UInt8}(0)
    check(LibMMSB.mmsb_gpu_create_page(s.handle, page_value(page), to_u64(size, "page size"),
                                       location_code(location), at))
    return get(LOCATION_NAMES, at[], :unknown)
end

"""
    migrate_page!(store::GpuStore, page, location::Symbol)

Moves a page to `:cpu`, `:gpu` or `:unified`, keeping its bytes and epoch.
"""
function migrate_page!(s::GpuStore, page::PageRef, location::Symbol)
    check(LibMMSB.mmsb_gpu_migrate_page(s.handle, page_value(page), location_code(location)))
    return nothing
end

"""
    delete_page!(store::GpuStore, page)

Frees a page of the GPU store.
"""
function delete_page!(s::GpuStore, page::PageRef)
    check(LibMMSB.mmsb_gpu_remove_page(s.handle, page_value(page)))
    return nothing
end

"""
    page_info(store::GpuStore, page) -> PageInfo

The page's size, epoch and current location (`eltype` is `nothing`).
"""
function page_info(s::GpuStore, page::PageRef)
    loc = Ref{UInt8}(0)
    epoch = Ref{UInt64}(0)
    size = Ref{UInt64}(0)
    check(LibMMSB.mmsb_gpu_page_info(s.handle, page_value(page), loc, epoch, size))
    return PageInfo(Int(size[]), epoch[], get(LOCATION_NAMES, loc[], :unknown), nothing, 0)
end

"""
    read_page(store::GpuStore, page) -> Vector{UInt8}

A copy of the page's bytes (copied from the device when it lives there).
"""
function read_page(s::GpuStore, page::PageRef)
    n = Ref{UInt64}(0)
    check(LibMMSB.mmsb_gpu_read_page(s.handle, page_value(page), C_NULL, 0, n))
    buf = Vector{UInt8}(undef, n[])
    check(LibMMSB.mmsb_gpu_read_page(s.handle, page_value(page), buf, length(buf), n))
    return buf
end

"""
    apply_deltas!(store::GpuStore, deltas::AbstractVector{Delta})

Applies the deltas in order as one batch (each touched page gains one epoch).
All are validated first: on an error nothing changed.
"""
function apply_deltas!(s::GpuStore, deltas::AbstractVector{Delta})
    hs = UInt64[d.handle for d in deltas]
    GC.@preserve deltas check(LibMMSB.mmsb_gpu_apply_deltas(s.handle, hs, length(hs)))
    return nothing
end

"""
    device_pointer(store::GpuStore, page) -> (ptr::UInt64, len::Int)

The device address and length in bytes of a page at `:gpu` or `:unified`, for
zero-copy use by other CUDA code in this process (the store uses device 0's
primary context, as CUDA.jl does); the store's work stream is waited for
first, so every batch already applied is visible. Most users want
[`device_view`](@ref).

The address is valid until the page is migrated ([`migrate_page!`](@ref)) or
deleted, the store is closed (or garbage-collected: keep `store` referenced),
or a device failure during [`apply_deltas!`](@ref) moves the page to `:cpu`.
Later `apply_deltas!` calls run on the store's own stream: synchronise your
stream before calling into the store again, and do not use the address while
a store call is running.

Throws `NotFoundError` for an unknown page, `GpuUnavailableError` when the
store has no device (pages asked for at `:gpu` were placed at `:cpu`) or runs
on the emulated device, `InvalidArgumentError` for a page at `:cpu`.
"""
function device_pointer(s::GpuStore, page::PageRef)
    ptr = Ref{UInt64}(0)
    len = Ref{UInt64}(0)
    check(LibMMSB.mmsb_gpu_page_device_ptr(s.handle, page_value(page), ptr, len))
    return (ptr[], Int(len[]))
end

"""
    device_view(store::GpuStore, page; T=UInt8) -> CuArray{T,1}

A CUDA.jl `CuArray` over the page's device memory (no copy): writes through
it change the page, and the store's later batches show in it. The page must be
at `:gpu` or `:unified`; its size must be a multiple of `sizeof(T)`.
Provided by the package extension `MMSBCUDAExt`, which loads when CUDA.jl is
loaded (`using CUDA`); without it this throws `UnsupportedError`. CUDA.jl is
an optional (weak) dependency of MMSB.

The view borrows the page: it is valid under the same conditions as
[`device_pointer`](@ref) (not after a migration, a delete or closing the
store), and is never freed by CUDA.jl. Call `CUDA.synchronize()` after writing
through it and before the next store call.
"""
function device_view end

function device_view(store, page; T::Type = UInt8)
    if Base.get_extension(@__MODULE__, :MMSBCUDAExt) === nothing
        throw(UnsupportedError("device_view needs CUDA.jl: run `using CUDA` (it loads MMSB's " *
                               "MMSBCUDAExt extension), then call device_view again"))
    end
    throw(InvalidArgumentError("device_view(store::GpuStore, page; T) takes a GpuStore and a page id, " *
                               "got $(typeof(store)) and $(typeof(page))"))
end

const FAILURE_POINTS = Dict{Symbol,Int32}(
    :none => LibMMSB.MMSB_GPU_FAIL_NONE,
    :kernel => LibMMSB.MMSB_GPU_FAIL_KERNEL,
    :copy => LibMMSB.MMSB_GPU_FAIL_COPY,
)

"""
    set_forced_failure!(store::GpuStore, point::Symbol)

Makes `:kernel` or `:copy` steps fail on purpose (`:none` stops), to test the
CPU fallback.
"""
function set_forced_failure!(s::GpuStore, point::Symbol)
    p = get(FAILURE_POINTS, point, nothing)
    p === nothing && throw(InvalidArgumentError("unknown failure point :$point; use :none, :kernel or :copy"))
    check(LibMMSB.mmsb_gpu_set_forced_failure(s.handle, p))
    return nothing
end

"""
    set_host_copy!(store::GpuStore, on::Bool)

Keeps a host copy of every device page, so a failure that loses the device
bytes is still recovered (costs a CPU apply per delta).
"""
function set_host_copy!(s::GpuStore, on::Bool)
    check(LibMMSB.mmsb_gpu_set_host_copy(s.handle, on))
    return nothing
end

"""
    set_graph_replay!(store::GpuStore, on::Bool)

Turns CUDA-graph replay of steady batches on or off (off by default). With it
on, a batch that touches each device page once is captured into a graph once
per batch shape (same pages, ranges and masks) and replayed afterwards: for
repetitive workloads. The bytes are the same either way; `gpu_stats` counts
`graph_captures` and `graph_replays`.
"""
function set_graph_replay!(s::GpuStore, on::Bool)
    check(LibMMSB.mmsb_gpu_set_graph_replay(s.handle, on))
    return nothing
end

"""
    gpu_stats(store::GpuStore) -> NamedTuple

The fallback statistics: `has_device`, `placement_fallbacks`,
`kernel_failures`, `copy_failures`, `batches_finished_on_cpu`,
`deltas_finished_on_cpu`, `pages_moved_to_cpu`,
`pages_restored_from_host_copy`, `gpu_groups`, `graph_captures`,
`graph_replays`.
"""
function gpu_stats(s::GpuStore)
    r = Ref{LibMMSB.MmsbGpuStats}()
    check(LibMMSB.mmsb_gpu_stats(s.handle, r))
    v = r[]
    return (has_device = v.has_device, placement_fallbacks = v.placement_fallbacks,
            kernel_failures = v.kernel_failures, copy_failures = v.copy_failures,
            batches_finished_on_cpu = v.batches_finished_on_cpu,
            deltas_finished_on_cpu = v.deltas_finished_on_cpu,
            pages_moved_to_cpu = v.pages_moved_to_cpu,
            pages_restored_from_host_copy = v.pages_restored_from_host_copy,
            gpu_groups = v.gpu_groups, graph_captures = v.graph_captures,
            graph_replays = v.graph_replays)
end

"""
    GpuMirror

Keeps a [`GpuStore`](@ref)'s copies of a durable store's gpu-sync children
current: after every acknowledged commit that changes a gpu-sync parent, the
child's device copy is refreshed (before `commit!` returns). Made by
[`attach_gpu_mirror`](@ref); stop it with `close`.
"""
mutable struct GpuMirror
    handle::UInt64  # a LibMMSB.MmsbGpuMirror; 0 once detached

    GpuMirror(handle::UInt64, ::Val{:owned}) = finalizer(finalize_gpu_mirror, new(handle))
end

function finalize_gpu_mirror(m::GpuMirror)
    h = m.handle
    m.handle = 0
    h == 0 || LibMMSB.mmsb_gpu_mirror_detach(h)
    return nothing
end

"""
    attach_gpu_mirror(gs::GpuStore, store::Store; location=:gpu) -> GpuMirror

Makes the gpu-sync edges of the durable `store` (from `open_store(dir; ...)`)
act by themselves on `gs`: see [`GpuMirror`](@ref). Children are created in
`gs` at `location` the first time. Pages pending now are refreshed at once.
"""
function attach_gpu_mirror(gs::GpuStore, store::Store; location::Symbol = :gpu)
    h = Ref{LibMMSB.MmsbGpuMirror}(0)
    check(LibMMSB.mmsb_gpu_mirror_attach(gs.handle, store.handle, location_code(location), h))
    return GpuMirror(h[], Val(:owned))
end

"""
    mirror_stats(m::GpuMirror) -> NamedTuple

`refreshes` (commits that refreshed pages), `pages_refreshed`, `errors`.
"""
function mirror_stats(m::GpuMirror)
    r = Ref{LibMMSB.MmsbGpuMirrorStats}()
    check(LibMMSB.mmsb_gpu_mirror_stats(m.handle, r))
    v = r[]
    return (refreshes = v.refreshes, pages_refreshed = v.pages_refreshed, errors = v.errors)
end

"""
    close(m::GpuMirror)

Detaches the mirror: later commits refresh nothing.
"""
function Base.close(m::GpuMirror)
    h = m.handle
    m.handle = 0
    h == 0 || check(LibMMSB.mmsb_gpu_mirror_detach(h))
    return nothing
end

# Page: fixed-size byte buffers in a store: create, inspect, read (copying or
# zero-copy), metadata, numeric views.

"""
    PageId(value::Integer)

The id of a page in a store (`0` is never a page). Functions that take a page
also accept a plain integer.
"""
struct PageId
    value::UInt64
end
PageId(p::PageId) = p

Base.show(io::IO, p::PageId) = print(io, "PageId(", p.value, ")")
Base.UInt64(p::PageId) = p.value

const PageRef = Union{PageId,Integer}

# Conversions with a typed error instead of an InexactError for impossible values.
function to_u64(x::Integer, what::AbstractString)
    x < 0 && throw(InvalidArgumentError("$what must be non-negative, got $x"))
    return UInt64(x)
end
page_value(p::PageId) = p.value
page_value(p::Integer) = to_u64(p, "page id")

# NUL-terminated strings for `Cstring` parameters: an embedded NUL is our
# InvalidArgumentError rather than Julia's ArgumentError from the conversion.
function c_string(s::AbstractString, what::AbstractString)
    str = String(s)
    occursin('\0', str) && throw(InvalidArgumentError("$what contains a NUL character"))
    return str
end

const LOCATIONS = Dict{Symbol,UInt8}(
    :cpu => LibMMSB.MMSB_LOCATION_CPU,
    :gpu => LibMMSB.MMSB_LOCATION_GPU,
    :unified => LibMMSB.MMSB_LOCATION_UNIFIED,
)
const LOCATION_NAMES = Dict{UInt8,Symbol}(v => k for (k, v) in LOCATIONS)

# Numeric view element types: MMSB_DTYPE_* <-> Julia type.
const DTYPES = Dict{UInt8,DataType}(
    LibMMSB.MMSB_DTYPE_U8 => UInt8,
    LibMMSB.MMSB_DTYPE_I32 => Int32,
    LibMMSB.MMSB_DTYPE_I64 => Int64,
    LibMMSB.MMSB_DTYPE_F32 => Float32,
    LibMMSB.MMSB_DTYPE_F64 => Float64,
    LibMMSB.MMSB_DTYPE_BOOL => Bool,
    LibMMSB.MMSB_DTYPE_U32 => UInt32,
    LibMMSB.MMSB_DTYPE_U64 => UInt64,
)
const DTYPE_CODES = Dict{DataType,UInt8}(v => k for (k, v) in DTYPES)

function dtype_code(T::Type)
    code = get(DTYPE_CODES, T, nothing)
    code === nothing && throw(InvalidArgumentError(
        "no MMSB numeric view for element type $T; supported: $(join(sort!([string(t) for t in keys(DTYPE_CODES)]), ", "))"))
    return code
end

"""
    PageInfo

What [`page_info`](@ref) reports: `size` (bytes), `epoch` (commits that changed
the page), `location` (`:cpu`, `:gpu` or `:unified`), `eltype` (the numeric
view's Julia element type, or `nothing`) and `view_len` (elements in the view).
"""
struct PageInfo
    size::Int
    epoch::UInt64
    location::Symbol
    eltype::Union{Nothing,DataType}
    view_len::Int
end

function Base.show(io::IO, i::PageInfo)
    print(io, "PageInfo(size=", i.size, ", epoch=", i.epoch, ", location=:", i.location)
    i.eltype === nothing || print(io, ", view=", i.eltype, "[", i.view_len, "]")
    print(io, ")")
end

"""
    create_page(store, size; location=:cpu) -> PageId

Creates a zeroed page of `size` bytes. `location` is `:cpu`, `:gpu` or
`:unified`; page stores back CPU pages only, the others throw
[`UnsupportedError`](@ref) (GPU and unified pages live in a [`GpuStore`](@ref)). A zero or negative size throws
[`InvalidArgumentError`](@ref).
"""
function create_page(store::AbstractStore, size::Integer; location::Symbol = :cpu)
    loc = get(LOCATIONS, location, nothing)
    loc === nothing && throw(InvalidArgumentError(
        "unknown page location :$location; use :cpu, :gpu or :unified"))
    id = Ref{LibMMSB.MmsbPageId}(0)
    check(LibMMSB.mmsb_page_create(store.handle, to_u64(size, "page size"), loc, id))
    return PageId(id[])
end

"""
    delete_page!(store, page)

Deletes a page ([`NotFoundError`](@ref) if it does not exist). Borrows of it
that are in progress stay readable until their block ends.
"""
function delete_page!(store::AbstractStore, page::PageRef)
    check(LibMMSB.mmsb_page_delete(store.handle, page_value(page)))
    return nothing
end

"""
    page_info(store, page) -> PageInfo

The page's size, epoch, location and numeric view.
"""
function page_info(store::AbstractStore, page::PageRef)
    r = Ref{LibMMSB.MmsbPageInfo}()
    check(LibMMSB.mmsb_page_info(store.handle, page_value(page), r))
    i = r[]
    return PageInfo(Int(i.size), i.epoch, get(LOCATION_NAMES, i.location, :unknown),
                    get(DTYPES, i.dtype, nothing), Int(i.view_len))
end

"""
    read_page!(buf::Vector{UInt8}, store, page, offset=0) -> buf

Copies `length(buf)` bytes of the page, starting at byte `offset` (0-based),
into `buf`. A range outside the page throws [`InvalidArgumentError`](@ref).
"""
function read_page!(buf::Vector{UInt8}, store::AbstractStore, page::PageRef, offset::Integer = 0)
    check(LibMMSB.mmsb_page_read(store.handle, page_value(page), to_u64(offset, "offset"),
                                 buf, UInt64(length(buf))))
    return buf
end

"""
    read_page(store, page) -> Vector{UInt8}
    read_page(store, page, offset, len) -> Vector{UInt8}

A copy of the whole page, or of `len` bytes from byte `offset` (0-based). The
copy is yours: later writes to the page do not change it. For a zero-copy
view, see [`borrow_page`](@ref).
"""
function read_page(store::AbstractStore, page::PageRef)
    return read_page(store, page, 0, page_info(store, page).size)
end

function read_page(store::AbstractStore, page::PageRef, offset::Integer, len::Integer)
    buf = Vector{UInt8}(undef, Int(to_u64(len, "length")))
    return read_page!(buf, store, page, offset)
end

"""
    list_pages(store) -> Vector{PageId}

The ids of all pages of the store, ascending.
"""
function list_pages(store::AbstractStore)
    while true
        n = Ref{UInt64}(0)
        check(LibMMSB.mmsb_page_list(store.handle, C_NULL, 0, n))
        ids = Vector{LibMMSB.MmsbPageId}(undef, Int(n[]))
        status = LibMMSB.mmsb_page_list(store.handle, ids, UInt64(length(ids)), n)
        # Another thread may have created a page in between: size again.
        status == LibMMSB.MMSB_ERR_BUFFER_TOO_SMALL && continue
        check(status)
        return PageId.(resize!(ids, n[]))
    end
end

"""
    set_metadata!(store, page, key, value)

Sets user metadata `key => value` on a page. `key` is a non-empty string of at
most 256 bytes without NUL; `value` is bytes (`AbstractVector{UInt8}`) or a
string (stored as its UTF-8 bytes), possibly empty.
"""
function set_metadata!(store::AbstractStore, page::PageRef, key::AbstractString, value::AbstractVector{UInt8})
    v = Vector{UInt8}(value)
    check(LibMMSB.mmsb_page_set_metadata(store.handle, page_value(page), c_string(key, "metadata key"),
                                         v, UInt64(length(v))))
    return nothing
end
set_metadata!(store::AbstractStore, page::PageRef, key::AbstractString, value::AbstractString) =
    set_metadata!(store, page, key, Vector{UInt8}(codeunits(String(value))))

"""
    get_metadata(store, page, key) -> Vector{UInt8}
    get_metadata(store, page, key, default)

The metadata value under `key`. A missing key throws [`NotFoundError`](@ref), or
returns `default` in the second form. Use `String(get_metadata(...))` for text.
"""
function get_metadata(store::AbstractStore, page::PageRef, key::AbstractString)
    k = c_string(key, "metadata key")
    p = page_value(page)
    while true
        n = Ref{UInt64}(0)
        check(LibMMSB.mmsb_page_get_metadata(store.handle, p, k, C_NULL, 0, n))
        buf = Vector{UInt8}(undef, Int(n[]))
        status = LibMMSB.mmsb_page_get_metadata(store.handle, p, k, buf, UInt64(length(buf)), n)
        status == LibMMSB.MMSB_ERR_BUFFER_TOO_SMALL && continue  # it grew in between
        check(status)
        return resize!(buf, n[])
    end
end

function get_metadata(store::AbstractStore, page::PageRef, key::AbstractString, default)
    try
        return get_metadata(store, page, key)
    catch e
        e isa NotFoundError || rethrow()
        # Only a missing key falls back: this throws NotFoundError if the page is missing.
        page_info(store, page)
        return default
    end
end

"""
    remove_metadata!(store, page, key)

Removes the metadata under `key` ([`NotFoundError`](@ref) if absent).
"""
function remove_metadata!(store::AbstractStore, page::PageRef, key::AbstractString)
    check(LibMMSB.mmsb_page_remove_metadata(store.handle, page_value(page), c_string(key, "metadata key")))
    return nothing
end

"""
    set_view!(store, page, T::Type, len)
    set_view!(store, page, nothing)

Gives the page a numeric view of `len` elements of `T` (`UInt8`, `Int32`,
`Int64`, `Float32`, `Float64`, `Bool`, `UInt32` or `UInt64`) over its first
`len * sizeof(T)` bytes, or clears the view. The view must fit the page.
[`borrow_page`](@ref) then yields a `Vector{T}`.
"""
function set_view!(store::AbstractStore, page::PageRef, T::Type, len::Integer)
    check(LibMMSB.mmsb_page_set_view(store.handle, page_value(page), dtype_code(T), to_u64(len, "view length")))
    return nothing
end

function set_view!(store::AbstractStore, page::PageRef, ::Nothing)
    check(LibMMSB.mmsb_page_set_view(store.handle, page_value(page), LibMMSB.MMSB_DTYPE_NONE, 0))
    return nothing
end

"""
    borrow_page(f, store, page; eltype=nothing)

Zero-copy read: pins the page's current bytes, wraps them as a `Vector` without
copying and calls `f(view)`, then releases the pin (also when `f` throws).
Returns `f`'s result.

The element type is `eltype` if given, else the page's numeric view type (see
[`set_view!`](@ref)) with its length, else `UInt8` over the whole page. With an
explicit `eltype`, the view covers the page's numeric view if its type matches,
else `size ÷ sizeof(eltype)` elements.

Rules (the pin is a snapshot):
* The view shows the bytes as they were when the borrow began. Writes applied
  meanwhile (even from `f` itself) and `delete_page!`/`close(store)` do not
  change or invalidate it; read the page again to see them.
* **The view must not escape the block.** After `f` returns the memory may be
  freed; keeping `view` (or a `view`/`reinterpret` of it) and reading it later is
  a use-after-free. Return `copy(view)` if you need the bytes afterwards.
* **Never write to the view.** The memory belongs to the library and other
  borrowers may share it.
"""
function borrow_page(f, store::AbstractStore, page::PageRef; eltype::Union{Nothing,Type} = nothing)
    ptr = Ref{Ptr{UInt8}}(C_NULL)
    len = Ref{UInt64}(0)
    borrow = Ref{LibMMSB.MmsbBorrow}(0)
    # The view type is chosen before pinning, so nothing can fail between pinning and `try`.
    info = page_info(store, page)
    T, n = borrow_shape(info, eltype)
    check(LibMMSB.mmsb_page_borrow(store.handle, page_value(page), ptr, len, borrow))
    try
        # The pinned snapshot is the page's size at pin time (it cannot have changed:
        # page sizes are fixed); guard anyway so a view never reads past it.
        n * sizeof(T) <= len[] || throw(InternalError(
            "borrowed $(len[]) bytes, too few for $n elements of $T"))
        view = unsafe_wrap(Array, Ptr{T}(ptr[]), n; own = false)
        result = GC.@preserve store view f(view)
        return result
    finally
        check(LibMMSB.mmsb_borrow_release(borrow[]))
    end
end

function borrow_shape(info::PageInfo, eltype::Union{Nothing,Type})
    if eltype === nothing
        info.eltype === nothing && return UInt8, info.size
        return info.eltype, info.view_len
    end
    dtype_code(eltype)  # only the supported element types
    info.eltype === eltype && return eltype, info.view_len
    return eltype, div(info.size, sizeof(eltype))
end

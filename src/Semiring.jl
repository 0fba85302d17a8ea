# Semiring: the built-in semirings of the engine over Julia vectors, in place
# and zero-copy (the kernels read and write the vectors' memory), and
# accumulate deltas (`page ⊕= payload`) for numeric pages.
#
# A semiring is named by a Symbol (`:plus_times`, `:min_plus`, `:max_plus`,
# `:max_times`, `:min_max`, `:or_and`) and an element type (Float32, Float64,
# Int32, Int64, UInt8, UInt32, UInt64, Bool); see docs/semiring.md for which
# pairs exist and their domains (integers wrap for plus-times and saturate for
# the tropical kinds). A pair without a built-in throws `UnsupportedError`.
module Semiring

using ..MMSB: LibMMSB, check, InvalidArgumentError, NotFoundError, Delta, PageRef, PageId,
    mask_words, Store, borrow_page, page_value

export fold_add, fold_mul, accumulate!, semiring_properties, semiring_identities,
    set_accumulator!, accumulate_delta, declare_node!, add_semiring_edge!, set_semiring_edge!,
    remove_semiring_edge!, node_info,
    read_node, borrow_node

const KINDS = Dict{Symbol,UInt8}(
    :plus_times => LibMMSB.MMSB_SEMIRING_PLUS_TIMES,
    :min_plus => LibMMSB.MMSB_SEMIRING_MIN_PLUS,
    :max_plus => LibMMSB.MMSB_SEMIRING_MAX_PLUS,
    :max_times => LibMMSB.MMSB_SEMIRING_MAX_TIMES,
    :min_max => LibMMSB.MMSB_SEMIRING_MIN_MAX,
    :or_and => LibMMSB.MMSB_SEMIRING_OR_AND,
)

const DTYPES = Dict{DataType,UInt8}(
    UInt8 => LibMMSB.MMSB_DTYPE_U8,
    Int32 => LibMMSB.MMSB_DTYPE_I32,
    Int64 => LibMMSB.MMSB_DTYPE_I64,
    Float32 => LibMMSB.MMSB_DTYPE_F32,
    Float64 => LibMMSB.MMSB_DTYPE_F64,
    Bool => LibMMSB.MMSB_DTYPE_BOOL,
    UInt32 => LibMMSB.MMSB_DTYPE_U32,
    UInt64 => LibMMSB.MMSB_DTYPE_U64,
)

function kind_code(kind::Symbol)
    k = get(KINDS, kind, nothing)
    k === nothing && throw(InvalidArgumentError(
        "unknown semiring :$kind; use one of $(join(sort!(collect(keys(KINDS))), ", "))"))
    return k
end

function dtype_code(T::Type)
    d = get(DTYPES, T, nothing)
    d === nothing && throw(InvalidArgumentError(
        "no semiring element type $T; use one of $(join(string.(keys(DTYPES)), ", "))"))
    return d
end

"""
    fold_add(kind::Symbol, x::Vector{T}) -> T

`x[1] ⊕ … ⊕ x[end]` with the `⊕` of the built-in semiring `kind` over `T`
(its zero for an empty vector), computed by the library's SIMD kernels on
`x`'s memory (no copy). Float sums may differ from a left-to-right loop within
rounding (docs/semiring.md states the bound).
"""
function fold_add(kind::Symbol, x::Vector{T}) where {T}
    k, d = kind_code(kind), dtype_code(T)
    out = Ref{T}()
    GC.@preserve x out begin
        check(LibMMSB.mmsb_semiring_fold_add(k, d, pointer(x), UInt64(length(x)),
                                             Base.unsafe_convert(Ptr{T}, out)))
    end
    return out[]
end

"""
    fold_mul(kind::Symbol, x::Vector{T}) -> T

`x[1] ⊗ … ⊗ x[end]` (the semiring's one for an empty vector); see [`fold_add`](@ref).
"""
function fold_mul(kind::Symbol, x::Vector{T}) where {T}
    k, d = kind_code(kind), dtype_code(T)
    out = Ref{T}()
    GC.@preserve x out begin
        check(LibMMSB.mmsb_semiring_fold_mul(k, d, pointer(x), UInt64(length(x)),
                                             Base.unsafe_convert(Ptr{T}, out)))
    end
    return out[]
end

"""
    accumulate!(kind::Symbol, c::Vector{T}, t::Vector{T}) -> c
    accumulate!(kind::Symbol, c::Vector{T}, t::Vector{T}, mask::AbstractVector{Bool}) -> c

`c[i] = c[i] ⊕ t[i]` in place, for every `i` or (the masked form `C<M> = C ⊕ T`
of GraphBLAS) where `mask[i]`. `c` and `t` must have equal lengths and must not
be the same array (`InvalidArgumentError`).
"""
function accumulate!(kind::Symbol, c::Vector{T}, t::Vector{T}) where {T}
    k, d = kind_code(kind), dtype_code(T)
    length(c) == length(t) || throw(InvalidArgumentError(
        "accumulate! needs vectors of equal length, got $(length(c)) and $(length(t))"))
    GC.@preserve c t begin
        check(LibMMSB.mmsb_semiring_accumulate(k, d, pointer(c), pointer(t), UInt64(length(c))))
    end
    return c
end

function accumulate!(kind::Symbol, c::Vector{T}, t::Vector{T},
                     mask::AbstractVector{Bool}) where {T}
    k, d = kind_code(kind), dtype_code(T)
    length(c) == length(t) == length(mask) || throw(InvalidArgumentError(
        "accumulate! needs c, t and mask of equal length, got " *
        "$(length(c)), $(length(t)) and $(length(mask))"))
    words = mask_words(mask)
    GC.@preserve c t words begin
        check(LibMMSB.mmsb_semiring_accumulate_masked(k, d, pointer(c), pointer(t),
                                                      UInt64(length(c)), pointer(words),
                                                      UInt64(length(words))))
    end
    return c
end

"""
    semiring_properties(kind::Symbol, T::Type) -> NamedTuple

`(commutative_add, commutative_mul, idempotent_add, has_subtraction, exact, has_terminal)` of the
built-in: what the engine plans incremental waves with (docs/semiring.md).
"""
function semiring_properties(kind::Symbol, T::Type)
    flags = Ref{UInt32}(0)
    check(LibMMSB.mmsb_semiring_properties(kind_code(kind), dtype_code(T), flags))
    f = flags[]
    has(bit) = (f & bit) != 0
    return (commutative_add = has(LibMMSB.MMSB_SEMIRING_FLAG_COMMUTATIVE_ADD),
            commutative_mul = has(LibMMSB.MMSB_SEMIRING_FLAG_COMMUTATIVE_MUL),
            idempotent_add = has(LibMMSB.MMSB_SEMIRING_FLAG_IDEMPOTENT_ADD),
            has_subtraction = has(LibMMSB.MMSB_SEMIRING_FLAG_HAS_SUBTRACTION),
            exact = has(LibMMSB.MMSB_SEMIRING_FLAG_EXACT),
            has_terminal = has(LibMMSB.MMSB_SEMIRING_FLAG_HAS_TERMINAL))
end

"""
    semiring_identities(kind::Symbol, T::Type) -> (zero::T, one::T)

The identities of `⊕` and `⊗` (min-plus over Float64: `(Inf, 0.0)`).
"""
function semiring_identities(kind::Symbol, ::Type{T}) where {T}
    k, d = kind_code(kind), dtype_code(T)
    z = Ref{T}()
    o = Ref{T}()
    GC.@preserve z o begin
        check(LibMMSB.mmsb_semiring_identities(k, d, Base.unsafe_convert(Ptr{T}, z),
                                               Base.unsafe_convert(Ptr{T}, o)))
    end
    return (z[], o[])
end

"""
    set_accumulator!(d::Delta, kind::Symbol, T::Type) -> d
    set_accumulator!(d::Delta, nothing) -> d

Makes the delta accumulate, `page ⊕= payload` over elements of `T`, instead of
overwriting (`nothing` restores overwrite). The delta's range must be aligned to
`sizeof(T)` and its mask must cover whole elements (`InvalidArgumentError`).
"""
function set_accumulator!(d::Delta, kind::Symbol, T::Type)
    check(LibMMSB.mmsb_delta_set_accumulator(d.handle, kind_code(kind), dtype_code(T)))
    return d
end

function set_accumulator!(d::Delta, ::Nothing)
    check(LibMMSB.mmsb_delta_set_accumulator(d.handle, 0x00, 0x00))
    return d
end

"""
    accumulate_delta(page, kind::Symbol, first::Integer, values::Vector{T};
                     mask=nothing) -> Delta

A delta that sets `page[first + i] ⊕= values[i + 1]` (0-based element
indices, so `first` counts elements from the start of the page) where
`mask[i + 1]` (every element when `mask === nothing`). Deltas with one
accumulator commute: concurrent writers may apply them in any order.
"""
function accumulate_delta(page::PageRef, kind::Symbol, first::Integer,
                          values::Vector{T}; mask::Union{Nothing,AbstractVector{Bool}} = nothing) where {T}
    dtype_code(T)
    first >= 0 || throw(InvalidArgumentError("first element index $first is negative"))
    bytes = Vector{UInt8}(reinterpret(UInt8, values))
    offset = first * sizeof(T)
    d = if mask === nothing
        Delta(page, offset, bytes)
    else
        length(mask) == length(values) || throw(InvalidArgumentError(
            "$(length(mask)) mask flags for $(length(values)) values"))
        Delta(page, offset, bytes, repeat(collect(mask), inner = sizeof(T)))
    end
    try
        set_accumulator!(d, kind, T)
    catch
        close(d)
        rethrow()
    end
    return d
end

# ------------------------------------------------------------------------
# Semiring nodes and edges on a durable store (semiring_graph_api.rs).

kind_symbol(k::UInt8) = only(s for (s, c) in KINDS if c == k)
dtype_type(d::UInt8) = only(T for (T, c) in DTYPES if c == d)

"""
    declare_node!(store::Store, page, kind::Symbol, T::Type, len; input=nothing) -> lsn

Declares `page` of a durable store a semiring node of `kind` over `T` with
`len` elements, fed by the optional input page `input` (same type and
length), in a commit of its own (logged, restored on reopen). The page is
written with its value (`input`, or the semiring's zero, e.g. `Inf` for
`:min_plus`). From then on every commit that writes an input page updates the
node pages it reaches in the same commit; writing a node page directly throws
`InvalidArgumentError`. See docs/semiring-propagation.md.
"""
function declare_node!(store::Store, page::PageRef, kind::Symbol, T::Type, len::Integer;
                       input::Union{Nothing,PageRef} = nothing)
    len >= 0 || throw(InvalidArgumentError("node length $len is negative"))
    lsn = Ref{UInt64}(0)
    check(LibMMSB.mmsb_semiring_declare_node(store.handle, page_value(page), kind_code(kind),
                                             dtype_code(T), UInt64(len),
                                             input === nothing ? UInt64(0) : page_value(input), lsn))
    return lsn[]
end

# The weight forms shared by `add_semiring_edge!` and `set_semiring_edge!`:
# `cfun` is the C function of the form (the add and set functions of a form
# take the same arguments).
function _semiring_edge(cfun, store::Store, parent::PageRef, child::PageRef, w::T) where {T<:Number}
    dtype_code(T)
    r = Ref{T}(w)
    lsn = Ref{UInt64}(0)
    GC.@preserve r begin
        check(cfun(store.handle, page_value(parent), page_value(child),
                   Base.unsafe_convert(Ptr{T}, r), UInt64(sizeof(T)), lsn))
    end
    return lsn[]
end

function _semiring_edge(cfun, store::Store, parent::PageRef, child::PageRef, d::Vector{T}) where {T<:Number}
    dtype_code(T)
    lsn = Ref{UInt64}(0)
    GC.@preserve d begin
        check(cfun(store.handle, page_value(parent), page_value(child), pointer(d), UInt64(sizeof(d)), lsn))
    end
    return lsn[]
end

function _semiring_edge(cfun, store::Store, parent::PageRef, child::PageRef, nrows::Integer, ncols::Integer,
                        indptr::AbstractVector{<:Integer}, indices::AbstractVector{<:Integer},
                        values::Vector{T}) where {T<:Number}
    dtype_code(T)
    length(indptr) == nrows + 1 || throw(InvalidArgumentError(
        "indptr has $(length(indptr)) offsets, not nrows + 1 = $(nrows + 1)"))
    length(indices) == length(values) || throw(InvalidArgumentError(
        "$(length(indices)) column indices for $(length(values)) values"))
    p = Vector{UInt64}(indptr)
    ix = Vector{UInt32}(indices)
    lsn = Ref{UInt64}(0)
    GC.@preserve p ix values begin
        check(cfun(store.handle, page_value(parent), page_value(child), UInt64(nrows), UInt64(ncols),
                   pointer(p), pointer(ix), UInt64(length(ix)), pointer(values), UInt64(sizeof(values)), lsn))
    end
    return lsn[]
end

"""
    add_semiring_edge!(store, parent, child, w::T) -> lsn                (scalar weight)
    add_semiring_edge!(store, parent, child, d::Vector{T}) -> lsn        (diagonal weight)
    add_semiring_edge!(store, parent, child, nrows, ncols, indptr, indices, values::Vector{T}) -> lsn

Adds the semiring edge `parent -> child` (two nodes of the same semiring and
element type `T`) in a commit of its own; the nodes it reaches are rewritten.
The CSR form takes 0-based `indptr` (`nrows + 1` offsets) and 0-based column
`indices` (increasing within a row), `nrows` being the child's length and
`ncols` the parent's. A cycle throws `CycleError`; nothing changes on error.
The weight vectors are read in place (no copy on the Julia side).
"""
add_semiring_edge!(store::Store, parent::PageRef, child::PageRef, w::Number) =
    _semiring_edge(LibMMSB.mmsb_semiring_add_edge_scalar, store, parent, child, w)
add_semiring_edge!(store::Store, parent::PageRef, child::PageRef, d::Vector{<:Number}) =
    _semiring_edge(LibMMSB.mmsb_semiring_add_edge_diagonal, store, parent, child, d)
add_semiring_edge!(store::Store, parent::PageRef, child::PageRef, nrows::Integer, ncols::Integer,
                   indptr::AbstractVector{<:Integer}, indices::AbstractVector{<:Integer},
                   values::Vector{<:Number}) =
    _semiring_edge(LibMMSB.mmsb_semiring_add_edge_csr, store, parent, child, nrows, ncols, indptr, indices, values)

"""
    set_semiring_edge!(store, parent, child, w::T) -> lsn                (scalar weight)
    set_semiring_edge!(store, parent, child, d::Vector{T}) -> lsn        (diagonal weight)
    set_semiring_edge!(store, parent, child, nrows, ncols, indptr, indices, values::Vector{T}) -> lsn

Replaces the weight of the existing semiring edge `parent -> child` (same
forms as `add_semiring_edge!`), in a commit of its own; the nodes it reaches
are rewritten. No such edge throws `NotFoundError`; a weight of the wrong
shape throws `InvalidArgumentError`; nothing changes on error.
"""
set_semiring_edge!(store::Store, parent::PageRef, child::PageRef, w::Number) =
    _semiring_edge(LibMMSB.mmsb_semiring_set_edge_scalar, store, parent, child, w)
set_semiring_edge!(store::Store, parent::PageRef, child::PageRef, d::Vector{<:Number}) =
    _semiring_edge(LibMMSB.mmsb_semiring_set_edge_diagonal, store, parent, child, d)
set_semiring_edge!(store::Store, parent::PageRef, child::PageRef, nrows::Integer, ncols::Integer,
                   indptr::AbstractVector{<:Integer}, indices::AbstractVector{<:Integer},
                   values::Vector{<:Number}) =
    _semiring_edge(LibMMSB.mmsb_semiring_set_edge_csr, store, parent, child, nrows, ncols, indptr, indices, values)

"""
    remove_semiring_edge!(store, parent, child) -> lsn

Removes the semiring edge `parent -> child` in a commit of its own; the nodes
it reached are rewritten. No such edge throws `NotFoundError` and changes
nothing.
"""
function remove_semiring_edge!(store::Store, parent::PageRef, child::PageRef)
    lsn = Ref{UInt64}(0)
    check(LibMMSB.mmsb_semiring_remove_edge(store.handle, page_value(parent), page_value(child), lsn))
    return lsn[]
end

"""
    node_info(store, page) -> (kind::Symbol, eltype::Type, len::Int, input::Union{Nothing,PageId})

The declaration of semiring node `page` (`NotFoundError` if it is not one).
"""
function node_info(store::Store, page::PageRef)
    k = Ref{UInt8}(0)
    d = Ref{UInt8}(0)
    n = Ref{UInt64}(0)
    i = Ref{UInt64}(0)
    check(LibMMSB.mmsb_semiring_node_info(store.handle, page_value(page), k, d, n, i))
    return (kind = kind_symbol(k[]), eltype = dtype_type(d[]), len = Int(n[]),
            input = i[] == 0 ? nothing : PageId(i[]))
end

"""
    read_node(store, page) -> Vector{T}

A copy of semiring node `page`'s value as a `Vector` of its element type.
"""
function read_node(store::Store, page::PageRef)
    info = node_info(store, page)
    T = info.eltype
    out = Vector{T}(undef, info.len)
    n = Ref{UInt64}(0)
    GC.@preserve out begin
        check(LibMMSB.mmsb_semiring_read_node(store.handle, page_value(page), dtype_code(T),
                                              pointer(out), UInt64(length(out)), n))
    end
    return out
end

"""
    borrow_node(f, store, page)

Zero-copy read of semiring node `page`: calls `f(view)` with its value as an
`AbstractVector` of its element type over the pinned page bytes (the rules of
[`borrow_page`](@ref) apply: the view must not escape `f`, never write to it).
"""
function borrow_node(f, store::Store, page::PageRef)
    info = node_info(store, page)
    return borrow_page(store, page; eltype = info.eltype) do v
        f(view(v, 1:info.len))
    end
end

end # module Semiring

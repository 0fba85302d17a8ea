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

using ..MMSB: LibMMSB, check, InvalidArgumentError, Delta, PageRef, mask_words

export fold_add, fold_mul, accumulate!, semiring_properties, semiring_identities,
    set_accumulator!, accumulate_delta

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

end # module Semiring

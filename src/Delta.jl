# Delta: the only way state changes. Build, annotate, inspect, apply, encode,
# decode and merge deltas; each `Delta` owns one `MmsbDelta` handle.

"""
    Delta(page, offset, bytes::AbstractVector{UInt8}; mask=nothing, source=nothing,
          intent=nothing, expected_epoch=nothing)
    Delta(page, offset, bytes, mask::AbstractVector{Bool}; kwargs...)

A dense delta: writes `bytes` into `page` starting at byte `offset` (0-based),
where `mask` is set (all bytes when `mask` is `nothing`). `mask` has one `Bool`
per byte of `bytes` (a `BitVector` works), or is the packed `Vector{UInt64}` of
the C ABI (see [`mask_words`](@ref)).

* `source`: a label for provenance (at most 4096 bytes of UTF-8).
* `intent`: intent metadata, a JSON document as a string.
* `expected_epoch`: makes the delta compare-and-set: it applies only while the
  page is at that epoch, otherwise [`apply_delta!`](@ref) throws
  [`EpochMismatchError`](@ref).

The delta copies `bytes` and `mask`; reuse them freely. Shape errors (an empty
range, a mask of the wrong length) throw [`InvalidArgumentError`](@ref) here;
whether the range fits the page is checked when the delta is applied.

A `Delta` is independent of any store. Free it with `close(delta)` when done
(a finalizer does it otherwise, eventually).
"""
mutable struct Delta
    handle::UInt64  # a LibMMSB.MmsbDelta; 0 once closed

    # Takes ownership of a handle the library just returned.
    Delta(handle::UInt64, ::Val{:owned}) = finalizer(finalize_delta, new(handle))
end

function finalize_delta(d::Delta)
    h = d.handle
    d.handle = 0
    h == 0 || LibMMSB.mmsb_delta_free(h)  # must not throw in a finalizer
    return nothing
end

"""
    close(delta::Delta)

Frees the delta; its handle becomes stale. Closing twice is a no-op.
"""
function Base.close(d::Delta)
    h = d.handle
    h == 0 && return nothing
    d.handle = 0
    check(LibMMSB.mmsb_delta_free(h))
    return nothing
end

"""
    isopen(delta::Delta) -> Bool

Whether `close` has not been called on the delta.
"""
Base.isopen(d::Delta) = d.handle != 0

"""
    mask_words(mask::AbstractVector{Bool}) -> Vector{UInt64}

Packs one flag per byte into the C ABI's mask layout: bit `i % 64` of word
`i ÷ 64` (0-based `i`) says whether byte `i` of the range is written;
`cld(length(mask), 64)` words, unused high bits zero.
"""
function mask_words(mask::AbstractVector{Bool})
    n = length(mask)
    words = zeros(UInt64, cld(n, 64))
    for (i, b) in enumerate(mask)
        if b
            k = i - 1
            words[(k >> 6) + 1] |= UInt64(1) << (k & 63)
        end
    end
    return words
end

# The packed mask for a range of `len` bytes, from flags or ready-made words.
function range_mask(mask::AbstractVector{Bool}, len::Integer)
    length(mask) == len || throw(InvalidArgumentError(
        "mask has $(length(mask)) flags, the range has $len bytes"))
    return mask_words(mask)
end
range_mask(mask::AbstractVector{UInt64}, ::Integer) = Vector{UInt64}(mask)
range_mask(mask, ::Integer) = throw(InvalidArgumentError(
    "a mask is an AbstractVector{Bool} (one flag per byte) or a Vector{UInt64} of packed words, got $(typeof(mask))"))

function Delta(page::PageRef, offset::Integer, bytes::AbstractVector{UInt8};
               mask = nothing, source = nothing, intent = nothing, expected_epoch = nothing)
    payload = Vector{UInt8}(bytes)
    p = page_value(page)
    off = to_u64(offset, "offset")
    h = Ref{LibMMSB.MmsbDelta}(0)
    if mask === nothing
        check(LibMMSB.mmsb_delta_new_dense(p, off, payload, UInt64(length(payload)), C_NULL, 0, h))
    else
        words = range_mask(mask, length(payload))
        check(LibMMSB.mmsb_delta_new_dense(p, off, payload, UInt64(length(payload)),
                                           words, UInt64(length(words)), h))
    end
    return annotated(Delta(h[], Val(:owned)), source, intent, expected_epoch)
end

Delta(page::PageRef, offset::Integer, bytes::AbstractVector{UInt8}, mask::AbstractVector{Bool}; kwargs...) =
    Delta(page, offset, bytes; mask = mask, kwargs...)

"""
    sparse_delta(page, offset, len, mask, values; source=nothing, intent=nothing,
                 expected_epoch=nothing) -> Delta

A sparse delta over the `len`-byte range at `offset`: only the masked bytes are
carried. `mask` has one `Bool` per byte of the range (or is packed
`Vector{UInt64}` words); the `k`-th set flag receives `values[k]`, so
`length(values)` must equal `count(mask)`.
"""
function sparse_delta(page::PageRef, offset::Integer, len::Integer, mask, values::AbstractVector{UInt8};
                      source = nothing, intent = nothing, expected_epoch = nothing)
    n = to_u64(len, "length")
    words = range_mask(mask, n)
    vals = Vector{UInt8}(values)
    h = Ref{LibMMSB.MmsbDelta}(0)
    check(LibMMSB.mmsb_delta_new_sparse(page_value(page), to_u64(offset, "offset"), n,
                                        words, UInt64(length(words)), vals, UInt64(length(vals)), h))
    return annotated(Delta(h[], Val(:owned)), source, intent, expected_epoch)
end

# Applies the keyword annotations; frees the delta if one is rejected.
function annotated(d::Delta, source, intent, expected_epoch)
    try
        source === nothing || set_source!(d, source)
        intent === nothing || set_intent!(d, intent)
        expected_epoch === nothing || set_expected_epoch!(d, expected_epoch)
    catch
        close(d)
        rethrow()
    end
    return d
end

"""
    set_source!(delta, source::AbstractString) -> delta

Sets the delta's provenance label (UTF-8, at most 4096 bytes, no NUL).
"""
function set_source!(d::Delta, source::AbstractString)
    check(LibMMSB.mmsb_delta_set_source(d.handle, c_string(source, "source")))
    return d
end

"""
    set_intent!(delta, json::AbstractString) -> delta

Sets the delta's intent metadata; `json` must be a JSON document
([`InvalidArgumentError`](@ref) otherwise).
"""
function set_intent!(d::Delta, json::AbstractString)
    check(LibMMSB.mmsb_delta_set_intent(d.handle, c_string(json, "intent")))
    return d
end

"""
    set_expected_epoch!(delta, epoch::Integer) -> delta

Makes the delta compare-and-set: it applies only while its page is at `epoch`.
"""
function set_expected_epoch!(d::Delta, epoch::Integer)
    check(LibMMSB.mmsb_delta_set_expected_epoch(d.handle, to_u64(epoch, "epoch")))
    return d
end

"""
    DeltaInfo

What [`delta_info`](@ref) reports: `page`, `offset`, `len` (the byte range),
`has_mask`, `sparse`, `expected_epoch` (`nothing` unless compare-and-set),
`payload_len` (bytes carried), `written_bytes` (bytes the delta writes) and
`timestamp_ns` (creation time, ns since the Unix epoch).
"""
struct DeltaInfo
    page::PageId
    offset::Int
    len::Int
    has_mask::Bool
    sparse::Bool
    expected_epoch::Union{Nothing,UInt64}
    payload_len::Int
    written_bytes::Int
    timestamp_ns::UInt64
end

"""
    delta_info(delta) -> DeltaInfo

The delta's shape and metadata.
"""
function delta_info(d::Delta)
    r = Ref{LibMMSB.MmsbDeltaInfo}()
    check(LibMMSB.mmsb_delta_info(d.handle, r))
    i = r[]
    return DeltaInfo(PageId(i.page), Int(i.offset), Int(i.len), i.has_mask, i.sparse,
                     i.has_expected_epoch ? i.expected_epoch : nothing,
                     Int(i.payload_len), Int(i.written_bytes), i.timestamp_ns)
end

"""
    apply_delta!(store, delta) -> (changed::Bool, epoch::UInt64)

Validates and applies `delta` to its page in `store`. Returns a named tuple:
whether any byte changed (a delta that changes nothing is a no-op and leaves the
epoch alone) and the page's epoch afterwards. On error nothing changed:
[`NotFoundError`](@ref) for a missing page, [`InvalidArgumentError`](@ref) for a
range outside it, [`EpochMismatchError`](@ref) for a stale compare-and-set.
The delta stays valid and may be applied again or elsewhere.
"""
function apply_delta!(store::AbstractStore, d::Delta)
    changed = Ref{Bool}(false)
    epoch = Ref{UInt64}(0)
    check(LibMMSB.mmsb_store_apply_delta(store.handle, d.handle, changed, epoch))
    return (changed = changed[], epoch = epoch[])
end

"""
    check_delta(store, delta) -> nothing

Throws the error [`apply_delta!`](@ref) would throw, without applying anything.
"""
function check_delta(store::AbstractStore, d::Delta)
    check(LibMMSB.mmsb_store_check_delta(store.handle, d.handle))
    return nothing
end

"""
    encode(delta) -> Vector{UInt8}

The delta in the versioned log encoding (what the transaction log stores).
[`decode`](@ref) reverses it.
"""
function encode(d::Delta)
    while true
        n = Ref{UInt64}(0)
        check(LibMMSB.mmsb_delta_encode(d.handle, C_NULL, 0, n))
        buf = Vector{UInt8}(undef, Int(n[]))
        status = LibMMSB.mmsb_delta_encode(d.handle, buf, UInt64(length(buf)), n)
        status == LibMMSB.MMSB_ERR_BUFFER_TOO_SMALL && continue  # re-annotated in between
        check(status)
        return resize!(buf, n[])
    end
end

# Decodes one delta from `buf[from:end]`; returns (delta, bytes consumed).
function decode_at(buf::Vector{UInt8}, from::Int)
    h = Ref{LibMMSB.MmsbDelta}(0)
    used = Ref{UInt64}(0)
    rest = length(buf) - from + 1
    status = GC.@preserve buf LibMMSB.mmsb_delta_decode(
        rest == 0 ? C_NULL : pointer(buf, from), UInt64(rest), h, used)
    check(status)
    return Delta(h[], Val(:owned)), Int(used[])
end

"""
    decode(bytes::AbstractVector{UInt8}) -> Delta

The delta encoded in `bytes` (by [`encode`](@ref)), which must hold exactly one
delta. Malformed input, and trailing bytes, throw [`CorruptionError`](@ref)
naming the offset. For a concatenation of deltas use [`decode_all`](@ref).
"""
function decode(bytes::AbstractVector{UInt8})
    buf = Vector{UInt8}(bytes)
    d, used = decode_at(buf, 1)
    if used != length(buf)
        close(d)
        throw(CorruptionError("$(length(buf) - used) trailing bytes after the delta at offset $used"))
    end
    return d
end

"""
    decode_all(bytes::AbstractVector{UInt8}) -> Vector{Delta}

Decodes a concatenation of encoded deltas, in order. On malformed input, the
deltas decoded so far are freed and [`CorruptionError`](@ref) is thrown.
"""
function decode_all(bytes::AbstractVector{UInt8})
    buf = Vector{UInt8}(bytes)
    out = Delta[]
    pos = 1
    try
        while pos <= length(buf)
            d, used = decode_at(buf, pos)
            push!(out, d)
            used > 0 || throw(InternalError("the decoder consumed no bytes at offset $(pos - 1)"))
            pos += used
        end
    catch
        foreach(close, out)
        rethrow()
    end
    return out
end

"""
    merge(a::Delta, b::Delta, rest::Delta...) -> Delta

A new delta equivalent to applying `a`, then `b` (then each of `rest`), to one
page: `apply_delta!(s, merge(a, b))` leaves the page exactly as
`apply_delta!(s, a); apply_delta!(s, b)` does. Like `Base.merge` on
collections, later arguments win where they overlap. The arguments stay valid;
close the result when done. Deltas of different pages throw
[`InvalidArgumentError`](@ref).

This extends `Base.merge` for `Delta` (MMSB owns the type, so this is not
piracy): "combine, later wins" is exactly `Base.merge`'s contract.
"""
function Base.merge(a::Delta, b::Delta)
    h = Ref{LibMMSB.MmsbDelta}(0)
    check(LibMMSB.mmsb_delta_merge(a.handle, b.handle, h))
    return Delta(h[], Val(:owned))
end

function Base.merge(a::Delta, b::Delta, rest::Delta...)
    acc = merge(a, b)
    for d in rest
        merged = try
            merge(acc, d)
        finally
            close(acc)  # an intermediate result: nobody else holds it
        end
        acc = merged
    end
    return acc
end

function Base.show(io::IO, d::Delta)
    if !isopen(d)
        print(io, "MMSB.Delta(closed)")
        return
    end
    i = try
        delta_info(d)
    catch e
        e isa MMSBError || rethrow()
        print(io, "MMSB.Delta(handle=0x", string(d.handle; base = 16), ", invalid)")
        return
    end
    print(io, "MMSB.Delta(", i.page, ", bytes ", i.offset, ":", i.offset + i.len,
          i.sparse ? ", sparse" : i.has_mask ? ", masked" : ", dense",
          ", writes ", i.written_bytes)
    i.expected_epoch === nothing || print(io, ", expects epoch ", i.expected_epoch)
    print(io, ")")
end

function Base.show(io::IO, i::DeltaInfo)
    print(io, "DeltaInfo(", i.page, ", offset=", i.offset, ", len=", i.len,
          ", has_mask=", i.has_mask, ", sparse=", i.sparse, ", expected_epoch=",
          something(i.expected_epoch, "none"), ", written_bytes=", i.written_bytes, ")")
end

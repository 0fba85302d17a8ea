# MMSB.jl test suite: `] test MMSB` (or `julia --project=. -e 'using Pkg; Pkg.test()'`).
#
# One file per source file (test_<concept>.jl). Shared helpers live here: a
# reference model of page bytes that every round trip is checked against.

using Test
using Random
using MMSB
using MMSB: LibMMSB

# Handles alive before any test: the suite must leave exactly as many behind.
const HANDLES_AT_START = live_handles()

"""
    ref_apply!(ref, offset, bytes, mask) -> Bool

Applies a dense delta to the reference model `ref` (a `Vector{UInt8}` standing
for the page): byte `i` of `bytes` goes to `ref[offset + i]` where `mask[i]`
(all bytes when `mask === nothing`). Returns whether any byte changed.
"""
function ref_apply!(ref::Vector{UInt8}, offset::Integer, bytes::AbstractVector{UInt8}, mask)
    changed = false
    for i in eachindex(bytes)
        if mask === nothing || mask[i]
            changed |= ref[offset + i] != bytes[i]
            ref[offset + i] = bytes[i]
        end
    end
    return changed
end

"The dense equivalent of a sparse delta: the k-th set flag of `mask` gets `values[k]`."
function sparse_to_dense(len::Integer, mask::AbstractVector{Bool}, values::AbstractVector{UInt8})
    bytes = zeros(UInt8, len)
    bytes[findall(mask)] = values
    return bytes
end

"""
    random_delta(rng, page, size) -> (delta, offset, bytes, mask)

A random dense, masked or sparse delta on a page of `size` bytes that fits the
page, with its dense description for the reference model (`mask` is `nothing`
or a `Vector{Bool}`). Payload bytes come from a small alphabet so that some
writes are no-ops.
"""
function random_delta(rng::AbstractRNG, page::PageId, size::Integer)
    len = rand(rng, 1:size)
    offset = rand(rng, 0:(size - len))
    bytes = rand(rng, UInt8(0):UInt8(3), len)
    kind = rand(rng, [:dense, :masked, :sparse])
    if kind == :dense
        return Delta(page, offset, bytes), offset, bytes, nothing
    end
    mask = rand(rng, Bool, len)
    if kind == :masked
        return Delta(page, offset, bytes, mask), offset, bytes, mask
    end
    values = bytes[findall(mask)]
    return sparse_delta(page, offset, len, mask, values), offset, sparse_to_dense(len, mask, values), mask
end

@testset "MMSB.jl" begin
    @testset "LibMMSB (generated bindings)" begin
        include("test_LibMMSB.jl")
    end
    @testset "MMSB (library)" begin
        include("test_MMSB.jl")
    end
    @testset "Errors" begin
        include("test_Errors.jl")
    end
    @testset "Store" begin
        include("test_Store.jl")
    end
    @testset "Page" begin
        include("test_Page.jl")
    end
    @testset "Delta" begin
        include("test_Delta.jl")
    end
    @testset "TLog (durable store)" begin
        include("test_TLog.jl")
    end
    @testset "PropagationEngine" begin
        include("test_PropagationEngine.jl")
    end
    @testset "Gpu (GPU stores)" begin
        include("test_Gpu.jl")
    end
    @testset "Transaction" begin
        include("test_transaction.jl")
    end
    @testset "Allocator" begin
        include("test_Allocator.jl")
    end
    @testset "Semiring" begin
        include("test_semiring.jl")
    end
    @testset "no leaked handles" begin
        # Deltas the tests dropped without `close` are freed by their finalizers.
        for _ in 1:20
            GC.gc(true)
            live_handles() == HANDLES_AT_START && break
            sleep(0.05)
        end
        @test live_handles() == HANDLES_AT_START
    end
end

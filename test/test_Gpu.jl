# Gpu: GPU stores, pages at :cpu/:gpu/:unified, the CPU fallback.

@testset "probe and open never fail for want of a GPU" begin
    @test gpu_available() isa Bool
    open_gpu_store() do gs
        @test isopen(gs)
        at = create_page(gs, 1, 64; location = :gpu)
        @test at == (gpu_available() ? :gpu : :cpu)
        @test page_info(gs, 1).location == at
        if !gpu_available()
            @test_throws GpuUnavailableError migrate_page!(gs, 1, :unified)
            @test gpu_stats(gs).placement_fallbacks == 1
        end
    end
end

@testset "emulated device: apply, migrate, read back against a reference" begin
    open_gpu_store(; emulated = true) do gs
        @test gpu_stats(gs).has_device
        @test create_page(gs, 7, 256; location = :unified) == :unified
        ref = zeros(UInt8, 256)
        rng = MersenneTwister(11)
        for _ in 1:20
            off = rand(rng, 0:200)
            bytes = rand(rng, UInt8, rand(rng, 1:56))
            d = Delta(PageId(7), off, bytes)
            apply_deltas!(gs, [d])
            close(d)
            ref_apply!(ref, off, bytes, nothing)
        end
        @test read_page(gs, 7) == ref
        @test page_info(gs, 7).epoch == 20
        for loc in (:gpu, :cpu, :unified)
            migrate_page!(gs, 7, loc)
            @test page_info(gs, 7).location == loc
            @test read_page(gs, 7) == ref
            @test page_info(gs, 7).epoch == 20
        end
        delete_page!(gs, 7)
        @test_throws NotFoundError page_info(gs, 7)
    end
end

@testset "forced kernel failure mid-batch finishes on the CPU, same bytes" begin
    open_gpu_store(; emulated = true) do gs
        ref = Dict(p => zeros(UInt8, 128) for p in 1:3)
        for p in 1:3
            create_page(gs, p, 128; location = :gpu)
        end
        set_forced_failure!(gs, :kernel)
        rng = MersenneTwister(5)
        deltas = Delta[]
        for _ in 1:9
            p = rand(rng, 1:3)
            off = rand(rng, 0:100)
            bytes = rand(rng, UInt8, rand(rng, 1:28))
            push!(deltas, Delta(PageId(p), off, bytes))
            ref_apply!(ref[p], off, bytes, nothing)
        end
        apply_deltas!(gs, deltas)
        foreach(close, deltas)
        for p in 1:3
            @test read_page(gs, p) == ref[p]
        end
        @test gpu_stats(gs).batches_finished_on_cpu == 1
        @test_throws InvalidArgumentError set_forced_failure!(gs, :sometimes)
    end
end

@testset "graph replay toggle: same bytes, one capture per batch shape" begin
    open_gpu_store(; emulated = true) do gs
        for p in 1:2
            create_page(gs, p, 64; location = :gpu)
        end
        ref = Dict(p => zeros(UInt8, 64) for p in 1:2)
        set_graph_replay!(gs, true)
        for wave in 1:5
            deltas = [Delta(PageId(p), 8, UInt8[(wave * 13 + p + k) % 256 for k in 1:16]) for p in 1:2]
            apply_deltas!(gs, deltas)
            for p in 1:2
                ref_apply!(ref[p], 8, UInt8[(wave * 13 + p + k) % 256 for k in 1:16], nothing)
            end
            foreach(close, deltas)
        end
        set_graph_replay!(gs, false)
        for p in 1:2
            @test read_page(gs, p) == ref[p]
        end
        st = gpu_stats(gs)
        @test st.graph_captures == 1
        @test st.graph_replays == 4
    end
end

@testset "GpuMirror: gpu-sync children follow every commit" begin
    mktempdir() do root
        open_store(joinpath(root, "data"); durability = :none) do store
            r = commit!(store) do c
                create_page!(c, 32)
                create_page!(c, 32)
            end
            a, b = r.created
            add_dependency!(store, a, b; kind = :gpu_sync)
            open_gpu_store(; emulated = true) do gs
                m = attach_gpu_mirror(gs, store; location = :gpu)
                for round in 1:4
                    d = Delta(b, 0, fill(UInt8(round), 8))
                    apply_delta!(store, d)
                    close(d)
                    d = Delta(a, 0, UInt8[round])
                    apply_delta!(store, d)
                    close(d)
                    @test read_page(gs, b) == read_page(store, b)
                    @test page_info(gs, b).location == :gpu
                end
                st = mirror_stats(m)
                @test st.refreshes == 4
                @test st.errors == 0
                close(m)
            end
        end
    end
end

@testset "device_pointer: errors without a real device" begin
    open_gpu_store(; emulated = true) do gs
        create_page(gs, 1, 64; location = :gpu)
        create_page(gs, 2, 64; location = :unified)
        create_page(gs, 3, 64; location = :cpu)
        @test_throws GpuUnavailableError device_pointer(gs, 1)  # the emulated device has no addresses
        @test_throws GpuUnavailableError device_pointer(gs, 2)
        @test_throws InvalidArgumentError device_pointer(gs, 3)
        @test_throws NotFoundError device_pointer(gs, 4)
    end
    open_gpu_store() do gs
        create_page(gs, 1, 64; location = :gpu)
        if gpu_available()
            ptr, len = device_pointer(gs, 1)
            @test ptr != 0 && len == 64
        else
            @test_throws GpuUnavailableError device_pointer(gs, 1)
        end
    end
end

@testset "device_view without CUDA.jl says to load it" begin
    if Base.get_extension(MMSB, :MMSBCUDAExt) === nothing
        open_gpu_store(; emulated = true) do gs
            create_page(gs, 1, 64; location = :gpu)
            err = try
                device_view(gs, 1)
                nothing
            catch e
                e
            end
            @test err isa UnsupportedError
            @test occursin("using CUDA", err.message)
        end
    end
end

# The CuArray views run only where CUDA.jl can be loaded from the test
# environment (it is a weak dependency, not a test dependency) and is functional.
const CUDA_LOADABLE = Base.find_package("CUDA") !== nothing
CUDA_LOADABLE && @eval using CUDA

if CUDA_LOADABLE && CUDA.functional() && gpu_available()
    @testset "device_view over CUDA.jl: no copy, same bytes as read_page" begin
        @test Base.get_extension(MMSB, :MMSBCUDAExt) !== nothing
        open_gpu_store() do gs
            for (p, loc) in ((1, :gpu), (2, :unified))
                @test create_page(gs, p, 256; location = loc) == loc
                bytes = rand(MersenneTwister(p), UInt8, 256)
                d = Delta(PageId(p), 0, bytes)
                apply_deltas!(gs, [d])
                close(d)
                v = device_view(gs, p)
                @test v isa CUDA.CuArray{UInt8,1}
                @test Array(v) == bytes == read_page(gs, p)
                vf = device_view(gs, p; T = Float32)
                @test length(vf) == 64
                @test Array(vf) == reinterpret(Float32, bytes)
                fill!(v, 0x2a)  # writes through the view land in the page
                CUDA.synchronize()
                @test read_page(gs, p) == fill(0x2a, 256)
                @test_throws InvalidArgumentError device_view(gs, p; T = NTuple{3,UInt8})
            end
            create_page(gs, 3, 64; location = :cpu)
            @test_throws InvalidArgumentError device_view(gs, 3)
        end
    end
else
    @info "device_view over CUDA.jl not tested: CUDA.jl not loadable here, not functional, or no GPU"
end

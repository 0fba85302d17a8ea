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

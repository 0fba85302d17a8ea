# The package module itself: library discovery, version, handle accounting.

@testset "library" begin
    @test isfile(MMSB.libmmsb)
    v = library_version()
    @test v isa VersionNumber
    @test v >= v"0.1.0"
    @test live_handles() isa Int
    @test live_handles() >= 0
end

@testset "every exported name is defined" begin
    for name in names(MMSB)
        @test isdefined(MMSB, name)
    end
end

@testset "live_handles counts stores, deltas and borrows" begin
    n0 = live_handles()
    store = open_store()
    @test live_handles() == n0 + 1
    page = create_page(store, 8)
    d = Delta(page, 0, UInt8[1])
    @test live_handles() == n0 + 2
    borrow_page(store, page) do bytes
        @test live_handles() == n0 + 3
    end
    @test live_handles() == n0 + 2
    close(d)
    close(store)
    @test live_handles() == n0
end

# Allocator: allocator_stats() against counts the test makes itself.

# Class whose slots hold `size` bytes: the smallest that fits (the allocator's rule).
class_for(stats, size) = findfirst(c -> c.slot_size >= size, stats.classes)

@testset "the size-class table" begin
    s = allocator_stats()
    sizes = [c.slot_size for c in s.classes]
    @test !isempty(sizes)
    @test all(diff(sizes) .> 0)
    @test all(sz -> sz % 64 == 0, sizes)
    @test last(sizes) == 65536
    @test s.totals.slot_size == 0 && s.large.slot_size == 0
end

@testset "totals are the sum of classes and the large path" begin
    s = allocator_stats()
    for f in (:live_pages, :live_bytes, :reserved_bytes, :allocations, :frees)
        @test getfield(s.totals, f) ==
              sum(getfield(c, f) for c in s.classes) + getfield(s.large, f)
    end
    @test s.totals.live_pages == s.totals.allocations - s.totals.frees
end

@testset "creating pages moves their class; closing the store gives them back" begin
    n, size = 50, 1000
    before = allocator_stats()
    c = class_for(before, size)
    @test c !== nothing
    store = open_store()
    for _ in 1:n
        create_page(store, size)
    end
    create_page(store, 100_000)  # a large page: the mutex path
    mid = allocator_stats()
    @test mid.classes[c].live_pages == before.classes[c].live_pages + n
    @test mid.classes[c].allocations == before.classes[c].allocations + n
    @test mid.classes[c].live_bytes == mid.classes[c].live_pages * mid.classes[c].slot_size
    @test mid.large.live_pages == before.large.live_pages + 1
    @test mid.large.live_bytes == before.large.live_bytes + 100_000
    close(store)
    after = allocator_stats()
    @test after.classes[c].live_pages == before.classes[c].live_pages
    @test after.classes[c].frees == before.classes[c].frees + n
    @test after.large.live_pages == before.large.live_pages
end

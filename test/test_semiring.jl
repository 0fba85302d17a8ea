# Semiring: folds and accumulation on Julia vectors (zero-copy) against plain
# Julia loops, properties and identities, accumulate deltas on numeric pages
# (any order gives the same page), and clear errors for bad names and types.

using MMSB.Semiring

@testset "folds equal a plain loop" begin
    rng = MersenneTwister(5)
    for n in (0, 1, 31, 32, 33, 1000, 5000)
        x = rand(rng, -1000:1000, n)
        @test fold_add(:plus_times, x) == sum(x; init = 0)
        @test fold_add(:min_plus, x) == (n == 0 ? typemax(Int64) : minimum(x))
        @test fold_mul(:min_plus, x) == sum(x; init = 0)
        @test fold_add(:min_max, x) == (n == 0 ? typemax(Int64) : minimum(x))
        @test fold_mul(:min_max, x) == (n == 0 ? typemin(Int64) : maximum(x))
        f = rand(rng, n) .* 100 .- 50
        @test isapprox(fold_add(:plus_times, f), sum(f; init = 0.0);
                       atol = 2 * n * eps(Float64) * sum(abs, f; init = 0.0))
        b = collect(rand(rng, n) .< 0.01)
        @test fold_add(:or_and, b) == any(b)
        @test fold_mul(:or_and, b) == all(b)
    end
    @test fold_add(:min_plus, Float64[]) == Inf
    @test fold_mul(:max_times, Float32[]) == 1.0f0
end

@testset "accumulate! works in place" begin
    rng = MersenneTwister(6)
    for n in (1, 63, 64, 65, 700)
        c = rand(rng, Int32(0):Int32(1000), n)
        t = rand(rng, Int32(0):Int32(1000), n)
        m = rand(rng, Bool, n)
        want = [m[i] ? min(c[i], t[i]) : c[i] for i in 1:n]
        cc = copy(c)
        @test accumulate!(:min_plus, cc, t, m) === cc
        @test cc == want
        @test accumulate!(:plus_times, cc, t) == want .+ t
    end
end

@testset "properties and identities" begin
    p = semiring_properties(:plus_times, Float64)
    @test p.commutative_add && p.commutative_mul && p.has_subtraction && !p.idempotent_add && !p.exact
    p = semiring_properties(:min_plus, Int64)
    @test p.idempotent_add && p.exact && p.has_terminal && !p.has_subtraction
    @test semiring_identities(:min_plus, Float64) == (Inf, 0.0)
    @test semiring_identities(:max_plus, Int32) == (typemin(Int32), Int32(0))
    @test semiring_identities(:or_and, Bool) == (false, true)
end

@testset "bad names, types and lengths" begin
    @test_throws InvalidArgumentError fold_add(:plus_minus, [1.0])
    @test_throws InvalidArgumentError fold_add(:plus_times, Int16[1])
    @test_throws UnsupportedError fold_add(:max_plus, UInt8[1])
    @test_throws InvalidArgumentError accumulate!(:plus_times, [1.0, 2.0], [1.0])
    @test_throws InvalidArgumentError accumulate!(:plus_times, [1.0, 2.0], [1.0, 2.0], [true])
    x = [1.0, 2.0]
    @test_throws InvalidArgumentError accumulate!(:plus_times, x, x)
end

@testset "accumulate deltas commute on a numeric page" begin
    rng = MersenneTwister(7)
    n = 40
    deltas = [(rand(rng, 0:(n - 10)), rand(rng, -50:50, 10), rand(rng, Bool, 10)) for _ in 1:6]
    want = zeros(Int64, n)
    for (first, v, m) in deltas, i in 1:10
        m[i] && (want[first + i] += v[i])
    end
    for order in (1:6, reverse(1:6), shuffle(rng, collect(1:6)))
        s = open_store()
        page = create_page(s, 8 * n)
        set_view!(s, page, Int64, n)
        for k in order
            first, v, m = deltas[k]
            d = accumulate_delta(page, :plus_times, first, v; mask = m)
            apply_delta!(s, d)
            close(d)
        end
        @test reinterpret(Int64, read_page(s, page)) == want
        close(s)
    end
    d = Delta(PageId(1), 3, zeros(UInt8, 8))
    @test_throws InvalidArgumentError set_accumulator!(d, :plus_times, Int64)
    @test set_accumulator!(d, nothing) === d
    close(d)
end

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

# Semiring nodes and edges on a durable store: node pages follow the commits
# that write their input pages, against plain Julia oracles (Dijkstra for
# min-plus, dense matrix-vector products for plus-times), across reopen.

function write_values!(store, page, first0::Integer, vals::Vector{T}) where {T}
    d = Delta(page, first0 * sizeof(T), Vector{UInt8}(reinterpret(UInt8, vals)))
    try
        apply_delta!(store, d)
    finally
        close(d)
    end
end

# dist[v] = min_s b[s] + d(s, v), O(n^2) Dijkstra over a dense length matrix (0 = no edge).
function dijkstra_from(b::Vector{Float64}, w::Matrix{Float64})
    n = length(b)
    dist = copy(b)
    done = falses(n)
    for _ in 1:n
        u = 0
        for v in 1:n
            if !done[v] && (u == 0 || dist[v] < dist[u])
                u = v
            end
        end
        (u == 0 || dist[u] == Inf) && break
        done[u] = true
        for v in 1:n
            if w[u, v] > 0 && dist[u] + w[u, v] < dist[v]
                dist[v] = dist[u] + w[u, v]
            end
        end
    end
    return dist
end

@testset "min-plus shortest paths in durable commits equal Dijkstra" begin
    mktempdir() do root
        dir = joinpath(root, "data")
        rng = MersenneTwister(11)
        n = 6
        w = [u != v && rand(rng) < 0.35 ? Float64(rand(rng, 1:9)) : 0.0 for u in 1:n, v in 1:n]
        # A^T with a zero diagonal in 0-based CSR: row v holds the parents u of v.
        indptr, indices, values = [0], Int[], Float64[]
        for v in 1:n
            for u in 1:n
                if u == v || w[u, v] > 0
                    push!(indices, u - 1)
                    push!(values, u == v ? 0.0 : w[u, v])
                end
            end
            push!(indptr, length(indices))
        end
        b = fill(Inf, n)
        b[1] = 0.0
        local input, layers
        open_store(dir; durability = :buffered) do store
            input = create_page(store, 8n)
            layers = [create_page(store, 8n) for _ in 1:n]
            write_values!(store, input, 0, b)
            for (k, p) in enumerate(layers)
                declare_node!(store, p, :min_plus, Float64, n; input = k == 1 ? input : nothing)
            end
            for k in 1:n-1
                add_semiring_edge!(store, layers[k], layers[k+1], n, n, indptr, indices, values)
            end
            info = node_info(store, layers[1])
            @test info.kind == :min_plus && info.eltype == Float64 && info.len == n && info.input == input
            @test read_node(store, layers[end]) == dijkstra_from(b, w)
            for _ in 1:10
                i = rand(rng, 1:n)
                b[i] = rand(rng) < 0.3 ? Inf : Float64(rand(rng, 0:20))
                write_values!(store, input, i - 1, [b[i]])
                @test read_node(store, layers[end]) == dijkstra_from(b, w)
                @test borrow_node(v -> collect(v), store, layers[1]) == b
            end
            # A node page cannot be written directly.
            @test_throws InvalidArgumentError write_values!(store, layers[end], 0, [1.0])
            @test_throws CycleError add_semiring_edge!(store, layers[end], layers[1], 0.0)
        end
        open_store(dir; durability = :buffered) do store
            @test read_node(store, layers[end]) == dijkstra_from(b, w)
            b[1] = 5.0
            write_values!(store, input, 0, [5.0])
            @test read_node(store, layers[end]) == dijkstra_from(b, w)
        end
    end
end

@testset "plus-times valuation in durable commits equals dense products" begin
    mktempdir() do root
        dir = joinpath(root, "data")
        rng = MersenneTwister(12)
        m, k = 5, 3
        A = [rand(rng) < 0.6 ? Float64(rand(rng, -4:4)) : 0.0 for _ in 1:k, _ in 1:m]
        indptr, indices, values = [0], Int[], Float64[]
        for i in 1:k, j in 1:m
            if A[i, j] != 0
                push!(indices, j - 1)
                push!(values, A[i, j])
            end
            j == m && push!(indptr, length(indices))
        end
        d = Float64[2, -1, 0.5]
        h = Float64.(rand(rng, -9:9, m))
        local hin, H, X, Y
        open_store(dir; durability = :buffered) do store
            hin = create_page(store, 8m)
            H, X, Y = create_page(store, 8m), create_page(store, 8k), create_page(store, 8k)
            write_values!(store, hin, 0, h)
            declare_node!(store, H, :plus_times, Float64, m; input = hin)
            declare_node!(store, X, :plus_times, Float64, k)
            declare_node!(store, Y, :plus_times, Float64, k)
            add_semiring_edge!(store, H, X, k, m, indptr, indices, values)
            add_semiring_edge!(store, X, Y, d)
            for _ in 1:8
                i = rand(rng, 1:m)
                h[i] = Float64(rand(rng, -9:9))
                write_values!(store, hin, i - 1, [h[i]])
                @test read_node(store, X) ≈ A * h
                @test read_node(store, Y) ≈ d .* (A * h)
            end
            @test_throws NotFoundError read_node(store, hin)
        end
        open_store(dir; durability = :buffered) do store
            @test read_node(store, Y) ≈ d .* (A * h)
            @test_throws NotFoundError node_info(store, hin)
            @test_throws InvalidArgumentError declare_node!(store, hin, :nope, Float64, m)
            # Changing edges: a new diagonal, a scalar, then removal.
            d2 = Float64[-3, 0.25, 4]
            set_semiring_edge!(store, X, Y, d2)
            @test read_node(store, Y) ≈ d2 .* (A * h)
            set_semiring_edge!(store, X, Y, 2.0)
            @test read_node(store, Y) ≈ 2.0 .* (A * h)
            @test_throws InvalidArgumentError set_semiring_edge!(store, X, Y, Float64[1, 2])
            @test read_node(store, Y) ≈ 2.0 .* (A * h)
            @test_throws NotFoundError set_semiring_edge!(store, H, Y, 1.0)
            remove_semiring_edge!(store, X, Y)
            @test read_node(store, Y) == zeros(k)
            @test_throws NotFoundError remove_semiring_edge!(store, X, Y)
            add_semiring_edge!(store, X, Y, d)
        end
        open_store(dir; durability = :buffered) do store
            @test read_node(store, Y) ≈ d .* (A * h)
        end
    end
end

# PropagationEngine: dependencies, Julia recompute functions, modes, batch
# routing, events, marks, graph queries, a refused cycle carrying its path, a
# failing recompute leaving no trace, and reopening without any recompute.
# Oracle: b = a .+ 3 .* a2 (wrapping), c = b .⊻ 0x5a.

want_b(a, a2) = UInt8.((Int.(a) .+ 3 .* Int.(a2)) .% 256)

@testset "derived pages on a durable store, against a reference" begin
    mktempdir() do root
        dir = joinpath(root, "data")
        calls = Dict(:b => 0, :c => 0)
        fb = (out, ins) -> begin
            calls[:b] += 1
            ins[1][1] == 0xff && throw(InvariantViolationError("b refuses 0xff"))
            out .= want_b(ins[1], length(ins) > 1 ? ins[2] : zeros(UInt8, length(out)))
        end
        fc = (out, ins) -> (calls[:c] += 1; out .= ins[1] .⊻ 0x5a)
        a = zeros(UInt8, 8)
        a2 = zeros(UInt8, 8)
        local pa, pa2, pb, pc, ps
        open_store(dir; durability = :buffered) do store
            r = commit!(store) do c
                for _ in 1:5
                    create_page!(c, 8)
                end
            end
            pa, pa2, pb, pc, ps = r.created
            register_recompute!(fb, store, pb)
            register_recompute!(fc, store, pc)
            commit!(store) do c
                add_dependency!(c, pa, pb)
                add_dependency!(c, pa2, pb; weight = 0.5)
                add_dependency!(c, pb, pc)
                add_dependency!(c, pa, ps; kind = :control)
            end
            @test parents(store, pb; kind = :data) == [pa, pa2]
            @test Set(children(store, pa)) == Set([pb, ps])
            order = topo_order(store)
            @test findfirst(==(pa), order) < findfirst(==(pb), order) < findfirst(==(pc), order)

            seen = Any[]
            sub = subscribe(ev -> push!(seen, ev), store, :stale)
            calls[:b] = calls[:c] = 0
            d = Delta(pa, 0, UInt8[7, 8])
            apply_delta!(store, d)
            close(d)
            a[1:2] .= [7, 8]
            @test read_page(store, pb) == want_b(a, a2)
            @test read_page(store, pc) == want_b(a, a2) .⊻ 0x5a
            @test calls == Dict(:b => 1, :c => 1)
            @test is_stale(store, ps)
            @test length(seen) == 1 && seen[1].page == ps && seen[1].cause == pa
            @test unsubscribe!(store, sub)

            lsn = store_lsn(store)
            e = try
                add_dependency!(store, pc, pa)
                nothing
            catch err
                err
            end
            @test e isa CycleError
            @test cycle_path(e) == [pc, pa, pb, pc]
            @test store_lsn(store) == lsn

            bad = Delta(pa, 0, UInt8[0xff])
            @test_throws InvariantViolationError apply_delta!(store, bad)
            @test_throws InvariantViolationError batch_route_deltas!(store, [bad])
            close(bad)
            @test store_lsn(store) == lsn
            @test read_page(store, pa)[1:2] == [7, 8]

            set_propagation_mode!(store, :deferred)
            @test propagation_mode(store) == :deferred
            calls[:b] = calls[:c] = 0
            d1 = Delta(pa, 3, UInt8[1])
            d2 = Delta(pa2, 4, UInt8[2])
            apply_delta!(store, d1)
            @test calls[:b] == 0
            batch_route_deltas!(store, [d2])
            a[4] = 1
            a2[5] = 2
            @test calls[:b] == 1
            @test read_page(store, pb) == want_b(a, a2)
            close(d1)
            close(d2)
            @test propagate!(store) == store_lsn(store)
            set_propagation_mode!(store, :immediate)
        end
        # Reopen: the graph and derived pages come back; nothing reruns.
        calls[:b] = calls[:c] = 0
        open_store(dir; durability = :buffered) do store
            @test read_page(store, pc) == want_b(a, a2) .⊻ 0x5a
            @test parents(store, pb; kind = :data) == [pa, pa2]
            @test !is_stale(store, ps)
            register_recompute!(fb, store, pb; reattach = true)
            register_recompute!(fc, store, pc; reattach = true)
            propagate!(store)
            @test calls == Dict(:b => 0, :c => 0)
            remove_dependency!(store, pa2, pb)
            @test read_page(store, pb) == want_b(a, zeros(UInt8, 8))
            clear_recompute!(store, pc)
            @test_throws NotFoundError clear_recompute!(store, pc)
        end
    end
end

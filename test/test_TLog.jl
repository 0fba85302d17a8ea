# TLog: durable stores — open/close/reopen, commit!, checkpoint!, replay,
# page history, log summary, recovery report, typed errors.

# Every page's bytes after every commit: model[lsn][page] (absent = no page).
snapshot(pages::Dict{PageId,Vector{UInt8}}) = Dict(p => copy(b) for (p, b) in pages)

function matches(store_or_state, want::Dict{PageId,Vector{UInt8}})
    Set(list_pages(store_or_state)) == Set(keys(want)) || return false
    return all(read_page(store_or_state, p) == b for (p, b) in want)
end

@testset "open, commit!, reopen round trip against a model" begin
    mktempdir() do root
        dir = joinpath(root, "data")
        rng = MersenneTwister(7)
        sizes = [64, 300, 1024]
        model = Dict{PageId,Vector{UInt8}}()
        history = Dict{UInt64,Dict{PageId,Vector{UInt8}}}(0 => snapshot(model))
        touched = Dict{PageId,Vector{UInt64}}()
        pages = PageId[]
        open_store(dir; segment_bytes = 2048) do store
            @test store_lsn(store) == 0
            r = commit!(store) do c
                for sz in sizes
                    create_page!(c, sz)
                end
            end
            @test r.lsn == 1
            @test length(r.created) == 3
            append!(pages, r.created)
            for (p, sz) in zip(pages, sizes)
                model[p] = zeros(UInt8, sz)
                touched[p] = UInt64[]
            end
            history[1] = snapshot(model)
            for _ in 1:15
                n = rand(rng, 1:3)
                picked = [rand(rng, 1:3) for _ in 1:n]
                ds = [random_delta(rng, pages[i], sizes[i]) for i in picked]
                r = commit!(store) do c
                    for (d, _, _, _) in ds
                        apply!(c, d)
                    end
                end
                for (i, (d, off, bytes, mask)) in zip(picked, ds)
                    ref_apply!(model[pages[i]], off, bytes, mask)
                    push!(touched[pages[i]], r.lsn)
                    close(d)
                end
                history[r.lsn] = snapshot(model)
            end
            @test matches(store, model)
            # one-op commits through the page API
            d = Delta(pages[1], 0, UInt8[9, 9])
            @test apply_delta!(store, d).changed
            model[pages[1]][1:2] .= 9
            push!(touched[pages[1]], store_lsn(store))
            history[store_lsn(store)] = snapshot(model)
            close(d)
            # metadata and views in a commit
            commit!(store) do c
                set_metadata!(c, pages[2], "owner", "sim")
                set_view!(c, pages[3], Float64, 128)
            end
            history[store_lsn(store)] = snapshot(model)
            @test String(get_metadata(store, pages[2], "owner")) == "sim"
            @test page_info(store, pages[3]).eltype == Float64
            st = durable_stats(store)
            @test st.lsn == store_lsn(store) == st.durable_lsn
            s = log_summary(store)
            @test s.commits == Int(store_lsn(store))
            @test s.first_lsn == 1 && s.last_lsn == store_lsn(store)
            @test s.compression_ratio == 1.0
            # page history lists the LSNs that wrote each page
            for p in pages
                h = page_history(store, p)
                @test [e.lsn for e in h] == touched[p]
                @test all(delta_info(e.delta).page == p for e in h)
                foreach(e -> close(e.delta), h)
            end
            # replay to every LSN equals the model there
            for (lsn, want) in history
                replay(store; lsn = lsn) do state
                    @test store_lsn(state) == lsn
                    @test matches(state, want)
                end
            end
            replay(store; time = 0) do state
                @test store_lsn(state) == 0
                @test isempty(list_pages(state))
            end
        end
        final = maximum(keys(history))
        open_store(dir) do store
            @test store_lsn(store) == final
            @test matches(store, model)
            rep = recovery_report(store)
            @test rep.commits_replayed == Int(final)
            @test rep.checkpoint_lsn === nothing
            ck = checkpoint!(store)
            @test ck.lsn == final && ck.pages == 3
            d = Delta(pages[2], 0, UInt8[5])
            commit!(store, d)
            model[pages[2]][1] = 5
            close(d)
        end
        open_store(dir) do store
            rep = recovery_report(store)
            @test rep.checkpoint_lsn == final
            @test rep.commits_replayed == 1
            @test matches(store, model)
            # the log before the checkpoint was pruned: not retained
            @test_throws NotFoundError replay(store; lsn = 1)
            @test_throws NotFoundError page_history(store, pages[1]; from = 1)
        end
    end
end

@testset "read-only states and typed errors" begin
    mktempdir() do root
        dir = joinpath(root, "data")
        open_store(dir) do store
            r = commit!(store) do c
                create_page!(c, 16)
            end
            p = only(r.created)
            state = replay(store; lsn = 1)
            @test state isa ReadOnlyState
            @test read_page(state, p) == zeros(UInt8, 16)
            @test state_timestamp(state) > 0
            d = Delta(p, 0, UInt8[1])
            @test_throws ReadOnlyError apply_delta!(state, d)
            @test_throws ReadOnlyError create_page(state, 8)
            @test_throws ReadOnlyError delete_page!(state, p)
            @test_throws ReadOnlyError set_metadata!(state, p, "k", "v")
            close(state)
            @test !isopen(state)
            @test_throws InvalidHandleError read_page(state, p)
            # nothing is committed when a commit fails or its block throws
            bad = Delta(p, 10, zeros(UInt8, 10))  # outside the page
            @test_throws InvalidArgumentError commit!(store) do c
                apply!(c, d)
                apply!(c, bad)
            end
            @test_throws ErrorException commit!(store) do c
                apply!(c, d)
                error("user code failed")
            end
            @test_throws InvalidArgumentError commit!(store) do c end
            @test store_lsn(store) == 1
            set_expected_epoch!(d, 99)
            @test_throws EpochMismatchError commit!(store, d)
            close(d)
            close(bad)
            @test_throws NotFoundError replay(store; lsn = 5)
            @test_throws InvalidArgumentError replay(store)
            @test_throws InvalidArgumentError replay(store; lsn = 1, time = 1)
            @test_throws InvalidArgumentError page_history(store, p; from = 3, to = 2)
        end
        @test_throws InvalidArgumentError open_store(dir; durability = :sometimes)
        @test_throws InvalidArgumentError open_store(dir; checkpoints_kept = 0)
        @test_throws InvalidArgumentError open_store(dir; durability = :buffered, max_delay_ms = 0)
        file = joinpath(root, "afile")
        write(file, "x")
        @test_throws IoError open_store(joinpath(file, "sub"))
        # in-memory stores have no log
        open_store() do mem
            @test_throws InvalidHandleError checkpoint!(mem)
            @test_throws InvalidHandleError store_lsn(mem)
        end
        open_store(dir; durability = :none) do s
            @test_throws UnsupportedError checkpoint!(s)
            @test_throws UnsupportedError replay(s; lsn = 0)
        end
        # buffered durability, compression, sync!
        open_store(joinpath(root, "buffered"); durability = :buffered, max_delay_ms = 5,
                   compression = true) do s
            p = create_page(s, 4096)
            d = Delta(p, 0, zeros(UInt8, 2048))
            d2 = Delta(p, 0, UInt8[1])
            apply_delta!(s, d2)
            apply_delta!(s, d)
            sync!(s)
            @test durable_stats(s).durable_lsn == store_lsn(s)
            close(d)
            close(d2)
        end
    end
end

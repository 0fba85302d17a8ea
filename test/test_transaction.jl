# Transaction: begin/read/apply!/commit!/abort!, conflicts that leave no trace,
# with_transaction retrying, and concurrent bank transfers whose total holds.

i64(bytes) = reinterpret(Int64, bytes)[1]
i64bytes(x::Int64) = collect(reinterpret(UInt8, [x]))

@testset "commit, read-your-writes, abort" begin
    mktempdir() do dir
        open_store(dir; durability = :buffered) do store
            a = create_page(store, 16)
            txn = begin_transaction(store)
            @test page_epoch(txn, a) == 0
            d = Delta(a, 0, UInt8[1, 2, 3])
            apply!(txn, d)
            close(d)
            @test read_page(txn, a)[1:3] == UInt8[1, 2, 3]
            @test read_page(store, a)[1:3] == zeros(UInt8, 3)   # not visible yet
            set_intent!(txn, "{\"why\":\"julia test\"}")
            lsn0 = store_lsn(store)
            @test commit!(txn) == lsn0 + 1
            @test read_page(store, a)[1:3] == UInt8[1, 2, 3]
            @test_throws InvalidArgumentError commit!(txn)   # finished
            close(txn)
            close(txn)                                       # twice is a no-op
            @test_throws InvalidHandleError read_page(txn, a)

            txn = begin_transaction(store)
            d = Delta(a, 0, UInt8[9])
            apply!(txn, d)
            abort!(txn)
            close(txn)
            close(d)
            @test read_page(store, a)[1] == 1
            @test store_lsn(store) == lsn0 + 1
        end
    end
end

@testset "a conflict throws TransactionConflictError and leaves no trace" begin
    mktempdir() do dir
        open_store(dir) do store
            a = create_page(store, 8)
            b = create_page(store, 8)
            txn = begin_transaction(store)
            read_page(txn, a)
            d = Delta(b, 0, UInt8[7])
            apply!(txn, d)
            close(d)
            d = Delta(a, 0, UInt8[1])
            apply_delta!(store, d)                     # another commit changes a
            close(d)
            before = durable_stats(store)
            err = try
                commit!(txn)
                nothing
            catch e
                e
            end
            @test err isa TransactionConflictError
            @test isretryable(err)
            after = durable_stats(store)
            @test after.lsn == before.lsn
            @test after.log_bytes == before.log_bytes
            @test read_page(store, b) == zeros(UInt8, 8)
            close(txn)
            st = transaction_stats(store)
            @test st.conflicts == 1
            @test st.begun == st.committed + st.aborted
        end
    end
end

@testset "with_transaction retries a conflict" begin
    open_store(mktempdir(); durability = :none) do store
        a = create_page(store, 8)
        calls = 0
        v = with_transaction(store) do txn
            calls += 1
            x = i64(read_page(txn, a))
            if calls == 1
                d = Delta(a, 0, i64bytes(Int64(10)))   # a concurrent writer sneaks in
                apply_delta!(store, d)
                close(d)
            end
            d = Delta(a, 0, i64bytes(x + 1))
            apply!(txn, d)
            close(d)
            x
        end
        @test calls == 2
        @test v == 10
        @test i64(read_page(store, a)) == 11
        # Other errors are not retried.
        calls = 0
        @test_throws InvalidArgumentError with_transaction(store) do txn
            calls += 1
            d = Delta(a, 7, UInt8[1, 2])            # outside the page
            try
                apply!(txn, d)
            finally
                close(d)
            end
        end
        @test calls == 1
    end
end

@testset "concurrent bank transfers keep the total" begin
    mktempdir() do dir
        open_store(dir; durability = :buffered) do store
            naccounts, per_page, initial = 64, 16, 1000
            pages = [create_page(store, per_page * 8) for _ in 1:(naccounts ÷ per_page)]
            for p in pages
                d = Delta(p, 0, collect(reinterpret(UInt8, fill(Int64(initial), per_page))))
                apply_delta!(store, d)
                close(d)
            end
            locate(acct) = (pages[acct ÷ per_page + 1], (acct % per_page) * 8)
            total() = with_transaction(store) do txn
                sum(sum(reinterpret(Int64, read_page(txn, p))) for p in pages)
            end
            ntasks, per_task = 4, 200
            effects = [zeros(Int64, naccounts) for _ in 1:ntasks]
            bad_totals = Threads.Atomic{Int}(0)   # checked after the tasks (no @test inside them)
            @sync for k in 1:ntasks
                Threads.@spawn begin
                    rng = MersenneTwister(k)
                    for i in 1:per_task
                        from, to = rand(rng, 0:(naccounts - 1)), rand(rng, 0:(naccounts - 1))
                        amount = rand(rng, 1:300)
                        moved = with_transaction(store) do txn
                            (fp, fo), (tp, to_off) = locate(from), locate(to)
                            fb = i64(read_page(txn, fp, fo, 8))
                            tb = i64(read_page(txn, tp, to_off, 8))
                            (from == to || fb < amount) && return false
                            for (p, o, v) in ((fp, fo, fb - amount), (tp, to_off, tb + amount))
                                d = Delta(p, o, i64bytes(Int64(v)))
                                apply!(txn, d)
                                close(d)
                            end
                            true
                        end
                        if moved
                            effects[k][from + 1] -= amount
                            effects[k][to + 1] += amount
                        end
                        if i % 20 == 0 && total() != naccounts * initial
                            Threads.atomic_add!(bad_totals, 1)
                        end
                    end
                end
            end
            @test bad_totals[] == 0
            final = reduce(vcat, [collect(reinterpret(Int64, read_page(store, p))) for p in pages])
            @test final == fill(Int64(initial), naccounts) .+ sum(effects)
            @test total() == naccounts * initial
            st = transaction_stats(store)
            @test st.begun == st.committed + st.aborted
        end
    end
end

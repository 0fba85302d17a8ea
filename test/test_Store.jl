# Store: open, close, do-block, stale handles, statistics.

@testset "open and close" begin
    store = open_store()
    @test store isa Store
    @test isopen(store)
    @test occursin("Store(handle=", sprint(show, store))
    close(store)
    @test !isopen(store)
    @test sprint(show, store) == "MMSB.Store(closed)"
    close(store)  # closing twice is a no-op
    @test !isopen(store)
end

@testset "do-block closes, also on error" begin
    kept = Ref{Any}(nothing)
    result = open_store() do store
        kept[] = store
        @test isopen(store)
        42
    end
    @test result == 42
    @test !isopen(kept[])

    err = try
        open_store() do store
            kept[] = store
            error("user code failed")
        end
        nothing
    catch e
        e
    end
    @test err isa ErrorException
    @test !isopen(kept[])
end

@testset "stale handle after close" begin
    store = open_store()
    page = create_page(store, 16)
    raw = store.handle
    close(store)
    # Through the idiomatic API (the closed store passes a null handle) ...
    @test_throws InvalidHandleError create_page(store, 16)
    @test_throws InvalidHandleError read_page(store, page)
    @test_throws InvalidHandleError store_stats(store)
    # ... and with the raw handle kept from before the close (stale, not null).
    @test LibMMSB.mmsb_page_create(raw, 16, LibMMSB.MMSB_LOCATION_CPU, Ref{UInt64}(0)) ==
          LibMMSB.MMSB_ERR_INVALID_HANDLE
    @test_throws InvalidHandleError MMSB.check(LibMMSB.mmsb_page_delete(raw, page.value))
    # A forged store, built around a handle that was never issued.
    forged = MMSB.Store(UInt64(0x5100_0000_dead_beef), Val(:owned))
    @test_throws InvalidHandleError create_page(forged, 16)
    forged.handle = 0  # never issued: nothing to free
end

@testset "stats" begin
    open_store() do store
        st = store_stats(store)
        @test st.pages == 0 && st.page_bytes == 0 && st.deltas_applied == 0
        page = create_page(store, 100)
        create_page(store, 28)
        @test store_stats(store).pages == 2
        @test store_stats(store).page_bytes == 128
        d = Delta(page, 0, UInt8[1, 2, 3])
        apply_delta!(store, d)
        apply_delta!(store, d)  # same bytes again: a no-op
        bad = Delta(page, 99, UInt8[1, 2])  # outside the 100-byte page
        @test_throws InvalidArgumentError apply_delta!(store, bad)
        st = store_stats(store)
        @test st.deltas_applied == 1
        @test st.deltas_noop == 1
        @test st.deltas_rejected == 1
        @test st.bytes_written == 3
        delete_page!(store, page)
        @test store_stats(store).pages == 1
        @test store_stats(store).page_bytes == 28
        close(d)
        close(bad)
    end
end

@testset "finalizer closes a dropped store" begin
    n0 = live_handles()
    dropped() = (open_store(); nothing)
    dropped()
    for _ in 1:20
        GC.gc(true)
        live_handles() == n0 && break
        sleep(0.05)
    end
    @test live_handles() == n0
end

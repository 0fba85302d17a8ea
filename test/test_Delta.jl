# Deltas: construction, application against a reference model, compare-and-set,
# encode/decode, merge, lifetime.

@testset "mask_words" begin
    @test mask_words(Bool[]) == UInt64[]
    @test mask_words([true, false, true]) == [UInt64(0b101)]
    m = falses(130)
    m[1] = true
    m[64] = true
    m[65] = true
    m[130] = true
    @test mask_words(m) == [UInt64(1) | (UInt64(1) << 63), UInt64(1), UInt64(2)]
    @test mask_words(trues(64)) == [typemax(UInt64)]
end

@testset "dense, masked and sparse deltas against a reference model" begin
    rng = MersenneTwister(20240601)
    open_store() do store
        for size in (1, 7, 64, 65, 300)
            page = create_page(store, size)
            ref = zeros(UInt8, size)
            epoch = UInt64(0)
            for _ in 1:60
                d, offset, bytes, mask = random_delta(rng, page, size)
                expect_changed = ref_apply!(ref, offset, bytes, mask)
                r = apply_delta!(store, d)
                @test r.changed == expect_changed
                expect_changed && (epoch += 1)
                @test r.epoch == epoch
                @test page_info(store, page).epoch == epoch
                @test read_page(store, page) == ref
                close(d)
            end
            # The changed/epoch pair also destructures like a tuple.
            d = Delta(page, 0, copy(ref))
            changed, e = apply_delta!(store, d)
            @test !changed  # writing the current bytes is a no-op ...
            @test e == epoch  # ... and leaves the epoch alone
            close(d)
        end
    end
end

@testset "masked delta writes only masked bytes" begin
    open_store() do store
        page = create_page(store, 8)
        d = Delta(page, 2, UInt8[9, 9, 9, 9], BitVector([true, false, false, true]))
        apply_delta!(store, d)
        @test read_page(store, page) == UInt8[0, 0, 9, 0, 0, 9, 0, 0]
        close(d)
        # Packed words are accepted too.
        d = Delta(page, 0, UInt8[5, 5]; mask = UInt64[0b10])
        apply_delta!(store, d)
        @test read_page(store, page)[1:2] == UInt8[0, 5]
        close(d)
        d = sparse_delta(page, 4, 4, [true, true, false, false], UInt8[1, 2])
        apply_delta!(store, d)
        @test read_page(store, page)[5:8] == UInt8[1, 2, 0, 0]
        info = delta_info(d)
        @test info.sparse && info.has_mask
        @test info.payload_len == 2
        @test info.written_bytes == 2
        close(d)
    end
end

@testset "bad input to deltas" begin
    open_store() do store
        page = create_page(store, 16)
        @test_throws InvalidArgumentError Delta(page, 0, UInt8[])                       # empty range
        @test_throws InvalidArgumentError Delta(0, 0, UInt8[1])                         # page 0
        @test_throws InvalidArgumentError Delta(page, -1, UInt8[1])                     # negative offset
        @test_throws InvalidArgumentError Delta(-5, 0, UInt8[1])                        # negative page
        @test_throws InvalidArgumentError Delta(page, 0, UInt8[1, 2], [true])           # mask length
        @test_throws InvalidArgumentError Delta(page, 0, UInt8[1, 2]; mask = UInt64[0b111])  # stray bits
        @test_throws InvalidArgumentError Delta(page, 0, UInt8[1, 2]; mask = UInt64[1, 1])   # word count
        @test_throws InvalidArgumentError Delta(page, 0, UInt8[1]; mask = "yes")        # not a mask
        @test_throws InvalidArgumentError Delta(page, 0, UInt8[1]; intent = "{not json")
        @test_throws InvalidArgumentError Delta(page, 0, UInt8[1]; source = "x"^5000)
        @test_throws InvalidArgumentError Delta(page, 0, UInt8[1]; source = "a\0b")
        @test_throws InvalidArgumentError Delta(page, 0, UInt8[1]; expected_epoch = -1)
        @test_throws InvalidArgumentError sparse_delta(page, 0, 4, [true, false, true, false], UInt8[1])
        @test_throws InvalidArgumentError sparse_delta(page, 0, 4, [true, false], UInt8[1])
        @test_throws InvalidArgumentError sparse_delta(page, 0, 0, Bool[], UInt8[])

        # Checked when applied: the range must fit the page, the page must exist.
        outside = Delta(page, 10, zeros(UInt8, 8))
        @test_throws InvalidArgumentError check_delta(store, outside)
        @test_throws InvalidArgumentError apply_delta!(store, outside)
        missing_page = Delta(page.value + 1000, 0, UInt8[1])
        @test_throws NotFoundError check_delta(store, missing_page)
        @test_throws NotFoundError apply_delta!(store, missing_page)
        @test read_page(store, page) == zeros(UInt8, 16)  # nothing changed
        @test page_info(store, page).epoch == 0
        close(outside)
        close(missing_page)
        # Every delta built above was rejected before it got a handle, or freed.
    end
end

@testset "annotations and delta_info" begin
    d = Delta(PageId(3), 4, UInt8[1, 2, 3]; source = "pricer", intent = """{"why": "tick"}""",
              expected_epoch = 7)
    info = delta_info(d)
    @test info isa DeltaInfo
    @test info.page == PageId(3)
    @test info.offset == 4 && info.len == 3
    @test !info.has_mask && !info.sparse
    @test info.expected_epoch == 7
    @test info.payload_len == 3 && info.written_bytes == 3
    @test info.timestamp_ns > 0
    @test occursin("expects epoch 7", sprint(show, d))
    @test occursin("DeltaInfo(", sprint(show, info))
    @test delta_info(Delta(PageId(3), 0, UInt8[1])).expected_epoch === nothing
    set_source!(d, "other")
    set_intent!(d, "[1, 2]")
    set_expected_epoch!(d, 8)
    @test delta_info(d).expected_epoch == 8
    @test_throws InvalidArgumentError set_intent!(d, "nope")
    close(d)
end

@testset "compare-and-set" begin
    open_store() do store
        page = create_page(store, 4)
        d1 = Delta(page, 0, UInt8[1]; expected_epoch = 0)
        @test apply_delta!(store, d1) == (changed = true, epoch = UInt64(1))
        # d1 again: the page is at epoch 1 now.
        @test_throws EpochMismatchError check_delta(store, d1)
        err = try
            apply_delta!(store, d1)
            nothing
        catch e
            e
        end
        @test err isa EpochMismatchError
        @test isretryable(err)
        @test read_page(store, page) == UInt8[1, 0, 0, 0]
        # The retry pattern: re-read the epoch, rebuild the delta.
        tries = Ref(0)
        result = with_retry(first_delay = 0.0) do
            tries[] += 1
            e = tries[] == 1 ? UInt64(0) : page_info(store, page).epoch  # first try is stale
            d = Delta(page, 1, UInt8[2]; expected_epoch = e)
            try
                apply_delta!(store, d)
            finally
                close(d)
            end
        end
        @test tries[] == 2
        @test result.epoch == 2
        close(d1)
    end
end

@testset "encode/decode round trip" begin
    rng = MersenneTwister(7)
    open_store() do store
        page = create_page(store, 200)
        for _ in 1:30
            d = first(random_delta(rng, page, 200))
            set_source!(d, "src-$(rand(rng, 1:1000))")
            rand(rng, Bool) && set_expected_epoch!(d, page_info(store, page).epoch)
            bytes = encode(d)
            @test bytes isa Vector{UInt8}
            d2 = decode(bytes)
            @test encode(d2) == bytes  # stable encoding
            i1, i2 = delta_info(d), delta_info(d2)
            for f in fieldnames(DeltaInfo)
                @test getfield(i1, f) == getfield(i2, f)
            end
            # The decoded delta does exactly what the original does.
            before = read_page(store, page)
            r2 = apply_delta!(store, d2)
            after = read_page(store, page)
            rollback = Delta(page, 0, before)
            apply_delta!(store, rollback)
            close(rollback)
            set_expected_epoch!(d, page_info(store, page).epoch)
            apply_delta!(store, d)
            @test read_page(store, page) == after
            @test r2.changed == (before != after)
            close(d)
            close(d2)
        end
    end
end

@testset "decode: malformed input" begin
    d = Delta(PageId(1), 0, UInt8[1, 2, 3]; source = "s")
    bytes = encode(d)
    @test_throws CorruptionError decode(UInt8[])
    @test_throws CorruptionError decode(UInt8[1, 2, 3, 4, 5])
    @test_throws CorruptionError decode(bytes[1:(end - 1)])          # truncated
    @test_throws CorruptionError decode(vcat(bytes, UInt8[0]))       # trailing byte
    # decode_all reads concatenations and frees what it decoded when one is bad.
    all3 = decode_all(vcat(bytes, bytes, bytes))
    @test length(all3) == 3
    @test all(x -> encode(x) == bytes, all3)
    foreach(close, all3)
    n0 = live_handles()
    @test_throws CorruptionError decode_all(vcat(bytes, bytes[1:5]))
    @test live_handles() == n0
    @test decode_all(UInt8[]) == Delta[]
    close(d)
end

@testset "merge == sequential apply" begin
    rng = MersenneTwister(99)
    open_store() do store
        size = 130
        a_page = create_page(store, size)
        b_page = create_page(store, size)
        reset!(state) = (w = Delta(a_page, 0, state); apply_delta!(store, w); close(w))
        for _ in 1:40
            init = rand(rng, UInt8(0):UInt8(3), size)
            da = first(random_delta(rng, a_page, size))
            db = first(random_delta(rng, a_page, size))
            m = merge(da, db)
            @test isopen(da) && isopen(db)  # the inputs stay valid
            @test delta_info(m).page == a_page
            # apply(b) ∘ apply(a) ...
            reset!(init)
            apply_delta!(store, da)
            apply_delta!(store, db)
            sequential = read_page(store, a_page)
            # ... equals apply(merge(a, b)) from the same state.
            reset!(init)
            apply_delta!(store, m)
            @test read_page(store, a_page) == sequential
            close(da)
            close(db)
            close(m)
        end
        # Three-way merge folds left.
        d1 = Delta(a_page, 0, UInt8[1, 1, 1])
        d2 = Delta(a_page, 1, UInt8[2, 2])
        d3 = Delta(a_page, 2, UInt8[3])
        n0 = live_handles()
        m = merge(d1, d2, d3)
        @test live_handles() == n0 + 1  # the intermediate result was freed
        reset!(zeros(UInt8, size))
        apply_delta!(store, m)
        @test read_page(store, a_page)[1:4] == UInt8[1, 2, 3, 0]
        foreach(close, (d1, d2, d3, m))

        x = Delta(a_page, 0, UInt8[1])
        y = Delta(b_page, 0, UInt8[1])
        @test_throws InvalidArgumentError merge(x, y)  # different pages
        close(x)
        close(y)
    end
end

@testset "lifetime: close, stale handles, finalizers" begin
    d = Delta(PageId(1), 0, UInt8[1])
    @test isopen(d)
    raw = d.handle
    close(d)
    @test !isopen(d)
    @test sprint(show, d) == "MMSB.Delta(closed)"
    close(d)  # twice is a no-op
    @test_throws InvalidHandleError delta_info(d)
    @test_throws InvalidHandleError encode(d)
    # The raw handle from before the close is stale, not reusable.
    @test LibMMSB.mmsb_delta_free(raw) == LibMMSB.MMSB_ERR_INVALID_HANDLE
    open_store() do store
        @test_throws InvalidHandleError apply_delta!(store, d)
    end

    n0 = live_handles()
    dropped() = (Delta(PageId(1), 0, UInt8[1]); nothing)
    for _ in 1:10
        dropped()
    end
    for _ in 1:20
        GC.gc(true)
        live_handles() == n0 && break
        sleep(0.05)
    end
    @test live_handles() == n0
end

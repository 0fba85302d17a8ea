# Pages: create, inspect, read, delete, list, metadata, views, zero-copy borrows.

@testset "create, info, read, delete" begin
    open_store() do store
        page = create_page(store, 64)
        @test page isa PageId
        @test page.value != 0
        info = page_info(store, page)
        @test info isa PageInfo
        @test info.size == 64
        @test info.epoch == 0
        @test info.location == :cpu
        @test info.eltype === nothing && info.view_len == 0
        @test occursin("size=64", sprint(show, info))
        @test read_page(store, page) == zeros(UInt8, 64)
        @test read_page(store, page, 10, 4) == zeros(UInt8, 4)
        @test read_page(store, page.value) == zeros(UInt8, 64)  # a plain integer id works too
        buf = fill(0xff, 8)
        @test read_page!(buf, store, page, 56) === buf
        @test buf == zeros(UInt8, 8)

        other = create_page(store, 8)
        @test list_pages(store) == sort([page, other]; by = p -> p.value)
        delete_page!(store, other)
        @test list_pages(store) == [page]
        @test_throws NotFoundError page_info(store, other)
        @test_throws NotFoundError read_page(store, other)
        @test_throws NotFoundError delete_page!(store, other)
    end
end

@testset "bad input to pages" begin
    open_store() do store
        @test_throws InvalidArgumentError create_page(store, 0)
        @test_throws InvalidArgumentError create_page(store, -1)
        @test_throws InvalidArgumentError create_page(store, 16; location = :moon)
        @test_throws UnsupportedError create_page(store, 16; location = :gpu)
        @test_throws UnsupportedError create_page(store, 16; location = :unified)
        page = create_page(store, 16)
        @test_throws InvalidArgumentError read_page(store, page, 12, 8)   # past the end
        @test_throws InvalidArgumentError read_page(store, page, -1, 4)
        @test_throws InvalidArgumentError read_page(store, page, 0, -4)
        @test_throws InvalidArgumentError page_info(store, -3)
        @test_throws NotFoundError page_info(store, 0)                    # 0 is never a page
        @test_throws NotFoundError page_info(store, page.value + 1000)
    end
end

@testset "metadata" begin
    open_store() do store
        page = create_page(store, 16)
        set_metadata!(store, page, "owner", "risk-desk")
        @test String(get_metadata(store, page, "owner")) == "risk-desk"
        set_metadata!(store, page, "blob", UInt8[0, 1, 2, 255])
        @test get_metadata(store, page, "blob") == UInt8[0, 1, 2, 255]
        set_metadata!(store, page, "empty", UInt8[])
        @test get_metadata(store, page, "empty") == UInt8[]
        set_metadata!(store, page, "owner", "ops")  # overwrite
        @test String(get_metadata(store, page, "owner")) == "ops"
        big = rand(UInt8, 10_000)
        set_metadata!(store, page, "big", big)
        @test get_metadata(store, page, "big") == big

        @test_throws NotFoundError get_metadata(store, page, "missing")
        @test get_metadata(store, page, "missing", nothing) === nothing
        @test get_metadata(store, page, "missing", UInt8[7]) == UInt8[7]
        # A missing *page* is not papered over by the default.
        @test_throws NotFoundError get_metadata(store, page.value + 1000, "owner", nothing)

        remove_metadata!(store, page, "owner")
        @test_throws NotFoundError get_metadata(store, page, "owner")
        @test_throws NotFoundError remove_metadata!(store, page, "owner")

        @test_throws InvalidArgumentError set_metadata!(store, page, "", "x")             # empty key
        @test_throws InvalidArgumentError set_metadata!(store, page, "k"^257, "x")        # too long
        @test_throws InvalidArgumentError set_metadata!(store, page, "a\0b", "x")         # NUL
        @test_throws InvalidArgumentError get_metadata(store, page, "a\0b")
        @test_throws NotFoundError set_metadata!(store, page.value + 1000, "k", "x")
    end
end

@testset "numeric views" begin
    open_store() do store
        page = create_page(store, 64)
        set_view!(store, page, Float64, 8)
        info = page_info(store, page)
        @test info.eltype === Float64
        @test info.view_len == 8
        set_view!(store, page, Int32, 3)
        @test page_info(store, page).eltype === Int32
        set_view!(store, page, nothing)
        @test page_info(store, page).eltype === nothing
        for T in (UInt8, Int32, Int64, Float32, Float64, Bool, UInt32, UInt64)
            set_view!(store, page, T, 1)
            @test page_info(store, page).eltype === T
        end
        @test_throws InvalidArgumentError set_view!(store, page, Float64, 9)     # 72 bytes > 64
        @test_throws InvalidArgumentError set_view!(store, page, ComplexF64, 1)  # no such dtype
        @test_throws InvalidArgumentError set_view!(store, page, String, 1)
        @test_throws InvalidArgumentError set_view!(store, page, Float64, -1)
        @test_throws NotFoundError set_view!(store, page.value + 1000, Float64, 1)
    end
end

@testset "borrow: zero-copy views" begin
    open_store() do store
        page = create_page(store, 32)
        d = Delta(page, 0, collect(UInt8(1):UInt8(32)))
        apply_delta!(store, d)
        close(d)

        # Untyped: the whole page as bytes.
        total = borrow_page(store, page) do bytes
            @test bytes isa Vector{UInt8}
            @test length(bytes) == 32
            @test bytes == collect(UInt8(1):UInt8(32))
            sum(Int, bytes)
        end
        @test total == sum(1:32)

        # Typed through the page's numeric view.
        vals = Float64[1.5, -2.0, 3.25]
        d = Delta(page, 0, collect(reinterpret(UInt8, vals)))
        apply_delta!(store, d)
        close(d)
        set_view!(store, page, Float64, 3)
        borrow_page(store, page) do xs
            @test xs isa Vector{Float64}
            @test xs == vals
        end
        # An explicit element type overrides the view.
        borrow_page(store, page; eltype = UInt32) do ws
            @test ws isa Vector{UInt32}
            @test length(ws) == 8
        end
        borrow_page(store, page; eltype = Float64) do xs
            @test length(xs) == 3  # the view's length, since the types agree
        end
        @test_throws InvalidArgumentError borrow_page(identity, store, page; eltype = ComplexF32)
        @test_throws NotFoundError borrow_page(identity, store, page.value + 1000)
    end
end

@testset "borrow: snapshot semantics" begin
    open_store() do store
        page = create_page(store, 16)
        before = zeros(UInt8, 16)
        d = Delta(page, 0, fill(0x07, 16))
        borrow_page(store, page) do bytes
            @test bytes == before
            # A write during the borrow is applied to the page ...
            r = apply_delta!(store, d)
            @test r.changed
            @test read_page(store, page) == fill(0x07, 16)
            # ... but the pinned snapshot does not change.
            @test bytes == before
        end
        @test read_page(store, page) == fill(0x07, 16)
        close(d)

        # Deleting the page or closing the store leaves the borrowed bytes readable.
        borrow_page(store, page) do bytes
            delete_page!(store, page)
            @test bytes == fill(0x07, 16)
        end
        other = open_store()
        p2 = create_page(other, 8)
        borrow_page(other, p2) do bytes
            close(other)
            @test bytes == zeros(UInt8, 8)
        end
    end
end

@testset "borrow: released when the block throws" begin
    open_store() do store
        page = create_page(store, 8)
        n0 = live_handles()
        err = try
            borrow_page(store, page) do bytes
                @test live_handles() == n0 + 1
                error("boom")
            end
            nothing
        catch e
            e
        end
        @test err isa ErrorException
        @test live_handles() == n0
        # Copying out is the way to keep bytes past the block.
        kept = borrow_page(copy, store, page)
        @test kept == zeros(UInt8, 8)
    end
end

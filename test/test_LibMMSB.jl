# The generated low-level bindings: layouts, constants and raw calls.

@testset "struct layouts match the C ABI" begin
    # Offsets a C compiler gives these structs on every 64-bit target.
    @test sizeof(LibMMSB.MmsbPageInfo) == 32
    @test fieldoffset(LibMMSB.MmsbPageInfo, 3) == 16  # location
    @test fieldoffset(LibMMSB.MmsbPageInfo, 4) == 17  # dtype
    @test fieldoffset(LibMMSB.MmsbPageInfo, 5) == 24  # view_len
    @test sizeof(LibMMSB.MmsbDeltaInfo) == 64
    @test fieldoffset(LibMMSB.MmsbDeltaInfo, 4) == 24  # has_mask
    @test fieldoffset(LibMMSB.MmsbDeltaInfo, 6) == 26  # has_expected_epoch
    @test fieldoffset(LibMMSB.MmsbDeltaInfo, 7) == 32  # expected_epoch
    @test fieldoffset(LibMMSB.MmsbDeltaInfo, 10) == 56  # timestamp_ns
    @test sizeof(LibMMSB.MmsbStoreStats) == 48
    @test isbitstype(LibMMSB.MmsbPageInfo) && isbitstype(LibMMSB.MmsbDeltaInfo) &&
          isbitstype(LibMMSB.MmsbStoreStats)
end

@testset "constants" begin
    @test LibMMSB.MMSB_OK === Int32(0)
    @test LibMMSB.MMSB_ERR_INVALID_ARGUMENT isa Int32
    @test LibMMSB.MMSB_LOCATION_CPU isa UInt8
    @test LibMMSB.MMSB_DTYPE_F64 isa UInt8
    @test LibMMSB.MmsbStore === UInt64 && LibMMSB.MmsbDelta === UInt64 &&
          LibMMSB.MmsbBorrow === UInt64 && LibMMSB.MmsbPageId === UInt64
    # Every MMSB_ERR_* constant's name matches the library's name for its code
    # (MMSB_ERR_NOT_FOUND <-> "NotFound"), so the two cannot drift apart.
    errs = filter(n -> startswith(string(n), "MMSB_ERR_"), names(LibMMSB; all = true))
    @test length(errs) == 19
    for n in errs
        code = getfield(LibMMSB, n)
        camel = join(uppercasefirst.(lowercase.(split(string(n)[10:end], "_"))))
        @test MMSB.error_name(code) == camel
    end
end

@testset "raw calls return status codes" begin
    s = Ref{LibMMSB.MmsbStore}(0)
    @test LibMMSB.mmsb_store_open_memory(s) == LibMMSB.MMSB_OK
    @test s[] != 0
    # A null out-pointer is an invalid argument, never a crash.
    @test LibMMSB.mmsb_store_open_memory(C_NULL) == LibMMSB.MMSB_ERR_INVALID_ARGUMENT
    page = Ref{LibMMSB.MmsbPageId}(0)
    @test LibMMSB.mmsb_page_create(s[], 16, LibMMSB.MMSB_LOCATION_CPU, page) == LibMMSB.MMSB_OK
    info = Ref{LibMMSB.MmsbPageInfo}()
    @test LibMMSB.mmsb_page_info(s[], page[], info) == LibMMSB.MMSB_OK
    @test info[].size == 16 && info[].epoch == 0 && info[].location == LibMMSB.MMSB_LOCATION_CPU
    @test LibMMSB.mmsb_page_info(s[], page[] + 100, info) == LibMMSB.MMSB_ERR_NOT_FOUND

    # Borrow and borrow_info.
    ptr = Ref{Ptr{UInt8}}(C_NULL)
    len = Ref{UInt64}(0)
    b = Ref{LibMMSB.MmsbBorrow}(0)
    @test LibMMSB.mmsb_page_borrow(s[], page[], ptr, len, b) == LibMMSB.MMSB_OK
    @test len[] == 16 && ptr[] != C_NULL
    @test UInt(ptr[]) % 64 == 0  # 64-byte aligned, as documented
    pid = Ref{LibMMSB.MmsbPageId}(0)
    ep = Ref{UInt64}(99)
    @test LibMMSB.mmsb_borrow_info(b[], pid, ep) == LibMMSB.MMSB_OK
    @test pid[] == page[] && ep[] == 0
    @test LibMMSB.mmsb_borrow_release(b[]) == LibMMSB.MMSB_OK
    @test LibMMSB.mmsb_borrow_release(b[]) == LibMMSB.MMSB_ERR_INVALID_HANDLE  # now stale

    # Forged and cross-kind handles are rejected.
    @test LibMMSB.mmsb_delta_free(0x3039) == LibMMSB.MMSB_ERR_INVALID_HANDLE
    @test LibMMSB.mmsb_delta_free(s[]) == LibMMSB.MMSB_ERR_INVALID_HANDLE  # a store, not a delta
    @test LibMMSB.mmsb_store_close(0) == LibMMSB.MMSB_ERR_INVALID_HANDLE

    @test LibMMSB.mmsb_store_close(s[]) == LibMMSB.MMSB_OK
    @test LibMMSB.mmsb_store_close(s[]) == LibMMSB.MMSB_ERR_INVALID_HANDLE
end

@testset "last error message" begin
    @test LibMMSB.mmsb_page_create(0, 16, LibMMSB.MMSB_LOCATION_CPU, Ref{UInt64}(0)) ==
          LibMMSB.MMSB_ERR_INVALID_HANDLE
    msg = Ref{Ptr{UInt8}}(C_NULL)
    @test LibMMSB.mmsb_last_error_message(msg) == LibMMSB.MMSB_OK
    @test startswith(unsafe_string(msg[]), "InvalidHandle: ")
end

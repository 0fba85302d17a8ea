# Status codes -> typed exceptions; retryability; retry with backoff.

const EXPECTED_TYPES = [
    LibMMSB.MMSB_ERR_INVALID_ARGUMENT => InvalidArgumentError,
    LibMMSB.MMSB_ERR_NOT_FOUND => NotFoundError,
    LibMMSB.MMSB_ERR_INVALID_HANDLE => InvalidHandleError,
    LibMMSB.MMSB_ERR_OUT_OF_MEMORY => AllocationError,
    LibMMSB.MMSB_ERR_IO => IoError,
    LibMMSB.MMSB_ERR_CORRUPTION => CorruptionError,
    LibMMSB.MMSB_ERR_CHECKSUM_MISMATCH => ChecksumMismatchError,
    LibMMSB.MMSB_ERR_CYCLE => CycleError,
    LibMMSB.MMSB_ERR_TRANSACTION_CONFLICT => TransactionConflictError,
    LibMMSB.MMSB_ERR_INVARIANT_VIOLATION => InvariantViolationError,
    LibMMSB.MMSB_ERR_GPU_UNAVAILABLE => GpuUnavailableError,
    LibMMSB.MMSB_ERR_GPU_ERROR => GpuError,
    LibMMSB.MMSB_ERR_MEMORY_PRESSURE => MemoryPressureError,
    LibMMSB.MMSB_ERR_INTERNAL => InternalError,
    LibMMSB.MMSB_ERR_EPOCH_MISMATCH => EpochMismatchError,
    LibMMSB.MMSB_ERR_UNSUPPORTED => UnsupportedError,
    LibMMSB.MMSB_ERR_BUFFER_TOO_SMALL => BufferTooSmallError,
    LibMMSB.MMSB_ERR_NO_SPACE => NoSpaceError,
    LibMMSB.MMSB_ERR_READ_ONLY => ReadOnlyError,
]

const RETRYABLE = Set([AllocationError, TransactionConflictError, GpuError,
                       MemoryPressureError, EpochMismatchError])

@testset "one exception type per code" begin
    @test length(unique(last.(EXPECTED_TYPES))) == length(EXPECTED_TYPES)
    @test length(MMSB.ERROR_TYPES) == length(EXPECTED_TYPES)
    for (code, T) in EXPECTED_TYPES
        @test T <: MMSBError
        e = MMSB.mmsb_error(code, "boom")
        @test e isa T
        @test errorcode(e) == code
        @test e.message == "boom"
        @test T("boom").code == code  # the message-only constructor fills in the code
        @test isretryable(e) == (T in RETRYABLE)
        @test occursin("boom", sprint(showerror, e))
        @test occursin(MMSB.error_name(code), sprint(showerror, e))
    end
    unknown = MMSB.mmsb_error(999, "from the future")
    @test unknown isa UnknownMMSBError
    @test errorcode(unknown) == 999
    @test !isretryable(unknown)
    @test !isretryable(ErrorException("not ours"))
end

@testset "check" begin
    @test MMSB.check(LibMMSB.MMSB_OK) === nothing
    # A real failure carries the library's message without the "Name: " prefix.
    status = LibMMSB.mmsb_store_close(0)
    err = try
        MMSB.check(status)
        nothing
    catch e
        e
    end
    @test err isa InvalidHandleError
    @test !isempty(err.message)
    @test !startswith(err.message, "InvalidHandle:")
    @test MMSB.error_name(LibMMSB.MMSB_ERR_NOT_FOUND) == "NotFound"
    @test MMSB.error_name(12345) == "Unknown(12345)"
end

@testset "with_retry" begin
    calls = Ref(0)
    result = with_retry(attempts = 4, first_delay = 0.0) do
        calls[] += 1
        calls[] < 3 && throw(TransactionConflictError("lost a race"))
        :done
    end
    @test result == :done
    @test calls[] == 3

    calls[] = 0
    fatal() = (calls[] += 1; throw(NotFoundError("not retryable")))
    @test_throws NotFoundError with_retry(fatal; attempts = 4, first_delay = 0.0)
    @test calls[] == 1  # fatal errors are not retried

    calls[] = 0
    stale() = (calls[] += 1; throw(EpochMismatchError("always stale")))
    @test_throws EpochMismatchError with_retry(stale; attempts = 3, first_delay = 0.0)
    @test calls[] == 3  # gives up after `attempts` tries

    @test_throws InvalidArgumentError with_retry(() -> 1; attempts = 0)
end

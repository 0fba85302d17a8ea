# Errors: every non-zero status from libmmsb becomes a typed Julia exception.
#
# The codes, their names and which ones are retryable come from the library
# (LibMMSB constants, `mmsb_error_is_retryable`); no number is written here.

"""
    MMSBError <: Exception

Supertype of every error MMSB throws. Each concrete subtype stands for one
status code of the C ABI and carries `code::Int32` (the `LibMMSB.MMSB_ERR_*`
value) and `message::String` (the library's explanation).

Use [`isretryable`](@ref) to tell transient failures (a lost transaction, a
stale expected epoch, memory pressure) from fatal ones, and [`with_retry`](@ref)
to retry the former with backoff.
"""
abstract type MMSBError <: Exception end

"""
    errorcode(e::MMSBError) -> Int32

The C ABI status code of `e` (one of the `LibMMSB.MMSB_ERR_*` constants).
"""
errorcode(e::MMSBError) = e.code

"""An argument is malformed: a range outside a page, a length mismatch, a null pointer, bad UTF-8 (`MMSB_ERR_INVALID_ARGUMENT`)."""
struct InvalidArgumentError <: MMSBError
    code::Int32
    message::String
end
InvalidArgumentError(msg::AbstractString) = InvalidArgumentError(LibMMSB.MMSB_ERR_INVALID_ARGUMENT, msg)

"""The named page, key or object does not exist (`MMSB_ERR_NOT_FOUND`)."""
struct NotFoundError <: MMSBError
    code::Int32
    message::String
end
NotFoundError(msg::AbstractString) = NotFoundError(LibMMSB.MMSB_ERR_NOT_FOUND, msg)

"""A store, delta or borrow handle is null, stale (closed or freed) or forged (`MMSB_ERR_INVALID_HANDLE`)."""
struct InvalidHandleError <: MMSBError
    code::Int32
    message::String
end
InvalidHandleError(msg::AbstractString) = InvalidHandleError(LibMMSB.MMSB_ERR_INVALID_HANDLE, msg)

"""An allocation failed (`MMSB_ERR_OUT_OF_MEMORY`; retryable). Named so as not to clash with `Base.OutOfMemoryError`."""
struct AllocationError <: MMSBError
    code::Int32
    message::String
end
AllocationError(msg::AbstractString) = AllocationError(LibMMSB.MMSB_ERR_OUT_OF_MEMORY, msg)

"""An I/O operation failed (`MMSB_ERR_IO`)."""
struct IoError <: MMSBError
    code::Int32
    message::String
end
IoError(msg::AbstractString) = IoError(LibMMSB.MMSB_ERR_IO, msg)

"""Stored or encoded data is structurally invalid (`MMSB_ERR_CORRUPTION`); the message names the offset."""
struct CorruptionError <: MMSBError
    code::Int32
    message::String
end
CorruptionError(msg::AbstractString) = CorruptionError(LibMMSB.MMSB_ERR_CORRUPTION, msg)

"""Stored data failed its checksum (`MMSB_ERR_CHECKSUM_MISMATCH`)."""
struct ChecksumMismatchError <: MMSBError
    code::Int32
    message::String
end
ChecksumMismatchError(msg::AbstractString) = ChecksumMismatchError(LibMMSB.MMSB_ERR_CHECKSUM_MISMATCH, msg)

"""
A dependency edge would close a cycle (`MMSB_ERR_CYCLE`). `path` names the
cycle as page ids, `parent -> child -> ... -> parent` (the first repeated at
the end); empty when not known.
"""
struct CycleError <: MMSBError
    code::Int32
    message::String
    path::Vector{UInt64}
end
# Built right after the failing call (by `check`): the library still holds the cycle.
CycleError(code::Int32, message::String) = CycleError(code, message, cycle_path_now())
CycleError(msg::AbstractString) = CycleError(LibMMSB.MMSB_ERR_CYCLE, String(msg), UInt64[])

"""
    cycle_path_now() -> Vector{UInt64}

The cycle of this thread's last library error, if it was a cycle (else empty).
"""
function cycle_path_now()
    n = Ref{UInt64}(0)
    LibMMSB.mmsb_last_cycle_path(Ptr{UInt64}(C_NULL), UInt64(0), n) == LibMMSB.MMSB_OK ||
        return UInt64[]
    buf = Vector{UInt64}(undef, Int(n[]))
    LibMMSB.mmsb_last_cycle_path(buf, UInt64(length(buf)), n) == LibMMSB.MMSB_OK ||
        return UInt64[]
    return buf
end

"""An optimistic transaction lost to a concurrent commit (`MMSB_ERR_TRANSACTION_CONFLICT`; retryable)."""
struct TransactionConflictError <: MMSBError
    code::Int32
    message::String
end
TransactionConflictError(msg::AbstractString) = TransactionConflictError(LibMMSB.MMSB_ERR_TRANSACTION_CONFLICT, msg)

"""A commit-time invariant rejected the commit (`MMSB_ERR_INVARIANT_VIOLATION`)."""
struct InvariantViolationError <: MMSBError
    code::Int32
    message::String
end
InvariantViolationError(msg::AbstractString) = InvariantViolationError(LibMMSB.MMSB_ERR_INVARIANT_VIOLATION, msg)

"""No usable GPU (`MMSB_ERR_GPU_UNAVAILABLE`)."""
struct GpuUnavailableError <: MMSBError
    code::Int32
    message::String
end
GpuUnavailableError(msg::AbstractString) = GpuUnavailableError(LibMMSB.MMSB_ERR_GPU_UNAVAILABLE, msg)

"""A GPU call failed (`MMSB_ERR_GPU_ERROR`; retryable)."""
struct GpuError <: MMSBError
    code::Int32
    message::String
end
GpuError(msg::AbstractString) = GpuError(LibMMSB.MMSB_ERR_GPU_ERROR, msg)

"""The memory budget is exhausted (`MMSB_ERR_MEMORY_PRESSURE`; retryable)."""
struct MemoryPressureError <: MMSBError
    code::Int32
    message::String
end
MemoryPressureError(msg::AbstractString) = MemoryPressureError(LibMMSB.MMSB_ERR_MEMORY_PRESSURE, msg)

"""A bug in MMSB: a broken invariant or a caught panic (`MMSB_ERR_INTERNAL`). Please report it."""
struct InternalError <: MMSBError
    code::Int32
    message::String
end
InternalError(msg::AbstractString) = InternalError(LibMMSB.MMSB_ERR_INTERNAL, msg)

"""A compare-and-set delta expected an epoch that is no longer current (`MMSB_ERR_EPOCH_MISMATCH`; retryable: re-read and rebuild the delta)."""
struct EpochMismatchError <: MMSBError
    code::Int32
    message::String
end
EpochMismatchError(msg::AbstractString) = EpochMismatchError(LibMMSB.MMSB_ERR_EPOCH_MISMATCH, msg)

"""The request is valid but not supported by this build or object, e.g. a GPU page in a CPU-only build (`MMSB_ERR_UNSUPPORTED`)."""
struct UnsupportedError <: MMSBError
    code::Int32
    message::String
end
UnsupportedError(msg::AbstractString) = UnsupportedError(LibMMSB.MMSB_ERR_UNSUPPORTED, msg)

"""An output buffer is too small (`MMSB_ERR_BUFFER_TOO_SMALL`). The idiomatic API sizes buffers itself; seeing this means the object grew between two calls."""
struct BufferTooSmallError <: MMSBError
    code::Int32
    message::String
end
BufferTooSmallError(msg::AbstractString) = BufferTooSmallError(LibMMSB.MMSB_ERR_BUFFER_TOO_SMALL, msg)

"""The disk is full (`MMSB_ERR_NO_SPACE`)."""
struct NoSpaceError <: MMSBError
    code::Int32
    message::String
end
NoSpaceError(msg::AbstractString) = NoSpaceError(LibMMSB.MMSB_ERR_NO_SPACE, msg)

"""The object is read-only (`MMSB_ERR_READ_ONLY`)."""
struct ReadOnlyError <: MMSBError
    code::Int32
    message::String
end
ReadOnlyError(msg::AbstractString) = ReadOnlyError(LibMMSB.MMSB_ERR_READ_ONLY, msg)

"""A status code this version of MMSB.jl does not know (a newer library); carries the raw code."""
struct UnknownMMSBError <: MMSBError
    code::Int32
    message::String
end

# Status code -> exception type. Built from the generated constants only.
const ERROR_TYPES = Dict{Int32,Type{<:MMSBError}}(
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
)

"""
    error_name(code::Integer) -> String

The library's stable name of a status code (`"InvalidArgument"`, ...), or
`"Unknown(<code>)"` for a code the library does not know.
"""
function error_name(code::Integer)
    name = Ref{Ptr{UInt8}}(C_NULL)
    status = LibMMSB.mmsb_error_name(Int32(code), name)
    (status == LibMMSB.MMSB_OK && name[] != C_NULL) || return "Unknown($code)"
    return unsafe_string(name[])
end

"""
    last_error_message() -> String

This thread's last error message from the library, copied (the library's string
is only valid until the next failing call on this thread). Empty if none.
"""
function last_error_message()
    msg = Ref{Ptr{UInt8}}(C_NULL)
    status = LibMMSB.mmsb_last_error_message(msg)
    (status == LibMMSB.MMSB_OK && msg[] != C_NULL) || return ""
    return unsafe_string(msg[])
end

"""
    mmsb_error(code::Integer, message::AbstractString) -> MMSBError

The exception for status `code` with `message`.
"""
function mmsb_error(code::Integer, message::AbstractString)
    T = get(ERROR_TYPES, Int32(code), UnknownMMSBError)
    return T(Int32(code), String(message))
end

"""
    check(status::Integer) -> nothing

Throws the typed [`MMSBError`](@ref) for a non-`MMSB_OK` status returned by a
`LibMMSB` call, with the library's message for it. Call it immediately after the
`LibMMSB` call: the message is thread-local and there must be no yield point (no
I/O, no `@sync`, no task switch) in between, so the task cannot migrate to
another thread or let another failing call overwrite the message.
"""
function check(status::Integer)
    status == LibMMSB.MMSB_OK && return nothing
    msg = last_error_message()
    # The library prefixes its message with the code's name ("InvalidArgument: ...");
    # the exception type already says that.
    prefix = error_name(status) * ": "
    if startswith(msg, prefix)
        msg = msg[(lastindex(prefix) + 1):end]
    end
    throw(mmsb_error(status, msg))
end

"""
    isretryable(e) -> Bool

Whether `e` is a transient MMSB failure worth retrying (as the library
classifies its code): `AllocationError`, `TransactionConflictError`,
`GpuError`, `MemoryPressureError` and `EpochMismatchError` are; the rest, and
any non-MMSB exception, are not.
"""
function isretryable(e::MMSBError)
    r = Ref{Bool}(false)
    status = LibMMSB.mmsb_error_is_retryable(e.code, r)
    return status == LibMMSB.MMSB_OK && r[]
end
isretryable(::Exception) = false

"""
    with_retry(f; attempts=5, first_delay=0.001, max_delay=1.0)

Calls `f()`, retrying with exponential backoff (jittered, `Base.ExponentialBackOff`)
while it throws a retryable [`MMSBError`](@ref) (see [`isretryable`](@ref)), at most
`attempts` times in all. Any other exception, or the last retryable one, propagates.
`f` must be safe to run again: for a compare-and-set delta, re-read the page and
build a new delta inside `f`.
"""
function with_retry(f; attempts::Integer = 5, first_delay::Real = 0.001, max_delay::Real = 1.0)
    attempts >= 1 || throw(InvalidArgumentError("attempts must be at least 1, got $attempts"))
    delays = ExponentialBackOff(; n = attempts - 1, first_delay = first_delay, max_delay = max_delay)
    return retry(f; delays = delays, check = (_, e) -> isretryable(e))()
end

function Base.showerror(io::IO, e::MMSBError)
    print(io, nameof(typeof(e)), " (", error_name(e.code), ", code ", e.code, "): ", e.message)
end

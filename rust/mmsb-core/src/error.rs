//! The error taxonomy shared by Rust, the C ABI and Julia.
//!
//! Every failure in MMSB is an [`Error`]: a stable numeric [`ErrorCode`] plus a
//! human-readable message. The numbers never change once released (new codes are
//! only appended), because they cross the C ABI as status codes and Julia turns
//! them into typed exceptions. Each code is either *retryable* (the same call may
//! succeed later: a transaction conflict, a compare-and-set that lost a race,
//! memory pressure) or *fatal* (retrying the same call cannot help: bad input,
//! corruption). `docs/errors.md` holds the same table; a test keeps the two equal.

use crate::page_id::PageId;
use std::fmt;

/// Stable numeric error codes. `0` is success and is not an error.
///
/// The discriminants are part of the C ABI and the on-disk format of error
/// reports: never renumber, only append.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// An argument is malformed: a range outside a page, a length mismatch, a null pointer.
    InvalidArgument = 1,
    /// The named page, key or object does not exist.
    NotFound = 2,
    /// A C ABI handle is null, stale (already freed) or forged.
    InvalidHandle = 3,
    /// An allocation failed.
    OutOfMemory = 4,
    /// An I/O operation failed for a reason retrying will not fix (EIO, EBADF, ...).
    Io = 5,
    /// Stored data is structurally invalid (bad magic, impossible length, unknown version).
    Corruption = 6,
    /// Stored data failed its checksum.
    ChecksumMismatch = 7,
    /// A dependency edge would close a cycle.
    Cycle = 8,
    /// An optimistic transaction lost to a concurrent commit.
    TransactionConflict = 9,
    /// A commit-time invariant rejected the commit.
    InvariantViolation = 10,
    /// No usable GPU (no driver, no device, or GPU support disabled).
    GpuUnavailable = 11,
    /// A GPU call failed (launch, copy, allocation on the device).
    GpuError = 12,
    /// The memory budget is exhausted; eviction may free room.
    MemoryPressure = 13,
    /// A bug in MMSB (a broken internal invariant or a caught panic).
    Internal = 14,
    /// A compare-and-set delta expected a page epoch that is no longer current.
    EpochMismatch = 15,
    /// The operation is valid but not supported by this build or for this object.
    Unsupported = 16,
    /// An output buffer is too small; the required size is reported alongside.
    BufferTooSmall = 17,
    /// The disk is full (ENOSPC).
    NoSpace = 18,
    /// The object is read-only (a replayed past state, a closed store).
    ReadOnly = 19,
}

impl ErrorCode {
    /// Every code, in numeric order. Used to generate and check the docs table.
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::InvalidHandle,
        ErrorCode::OutOfMemory,
        ErrorCode::Io,
        ErrorCode::Corruption,
        ErrorCode::ChecksumMismatch,
        ErrorCode::Cycle,
        ErrorCode::TransactionConflict,
        ErrorCode::InvariantViolation,
        ErrorCode::GpuUnavailable,
        ErrorCode::GpuError,
        ErrorCode::MemoryPressure,
        ErrorCode::Internal,
        ErrorCode::EpochMismatch,
        ErrorCode::Unsupported,
        ErrorCode::BufferTooSmall,
        ErrorCode::NoSpace,
        ErrorCode::ReadOnly,
    ];

    /// The stable number of this code.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code with this number, if any.
    pub fn from_i32(n: i32) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_i32() == n)
    }

    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::OutOfMemory
                | ErrorCode::TransactionConflict
                | ErrorCode::GpuError
                | ErrorCode::MemoryPressure
                | ErrorCode::EpochMismatch
        )
    }

    /// The stable name, as used in docs, the C header comments and Julia exception types.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "InvalidArgument",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::InvalidHandle => "InvalidHandle",
            ErrorCode::OutOfMemory => "OutOfMemory",
            ErrorCode::Io => "Io",
            ErrorCode::Corruption => "Corruption",
            ErrorCode::ChecksumMismatch => "ChecksumMismatch",
            ErrorCode::Cycle => "Cycle",
            ErrorCode::TransactionConflict => "TransactionConflict",
            ErrorCode::InvariantViolation => "InvariantViolation",
            ErrorCode::GpuUnavailable => "GpuUnavailable",
            ErrorCode::GpuError => "GpuError",
            ErrorCode::MemoryPressure => "MemoryPressure",
            ErrorCode::Internal => "Internal",
            ErrorCode::EpochMismatch => "EpochMismatch",
            ErrorCode::Unsupported => "Unsupported",
            ErrorCode::BufferTooSmall => "BufferTooSmall",
            ErrorCode::NoSpace => "NoSpace",
            ErrorCode::ReadOnly => "ReadOnly",
        }
    }

    /// One sentence on what the code means, for the docs table.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => {
                "an argument is malformed (range outside a page, length mismatch, null pointer)"
            }
            ErrorCode::NotFound => "the named page, key or object does not exist",
            ErrorCode::InvalidHandle => "a C ABI handle is null, stale (freed) or forged",
            ErrorCode::OutOfMemory => "an allocation failed",
            ErrorCode::Io => "an I/O operation failed (EIO and other non-transient errors)",
            ErrorCode::Corruption => "stored data is structurally invalid",
            ErrorCode::ChecksumMismatch => "stored data failed its checksum",
            ErrorCode::Cycle => "a dependency edge would close a cycle",
            ErrorCode::TransactionConflict => {
                "an optimistic transaction lost to a concurrent commit"
            }
            ErrorCode::InvariantViolation => "a commit-time invariant rejected the commit",
            ErrorCode::GpuUnavailable => "no usable GPU",
            ErrorCode::GpuError => "a GPU call failed",
            ErrorCode::MemoryPressure => "the memory budget is exhausted",
            ErrorCode::Internal => "a bug in MMSB (broken invariant or caught panic)",
            ErrorCode::EpochMismatch => {
                "a compare-and-set delta expected an epoch that is no longer current"
            }
            ErrorCode::Unsupported => "valid, but not supported by this build or object",
            ErrorCode::BufferTooSmall => {
                "an output buffer is too small (the needed size is reported)"
            }
            ErrorCode::NoSpace => "the disk is full (ENOSPC)",
            ErrorCode::ReadOnly => "the object is read-only",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Structured facts some errors carry beside their message, for callers that
/// act on them (the message says the same in words).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorDetail {
    /// The cycle a rejected dependency edge would have closed, as a path that
    /// starts and ends at the same page: `[a, b, ..., a]`, where `a -> b` is the
    /// rejected edge and every other step is an edge already in the graph.
    Cycle(Vec<PageId>),
}

/// An MMSB error: a stable code and a message that says what went wrong and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, naming the object and the offending value.
    pub message: String,
    /// Optional structured detail (boxed, so the common error stays small).
    pub detail: Option<Box<ErrorDetail>>,
}

impl Error {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// This error with structured detail attached.
    pub fn with_detail(mut self, detail: ErrorDetail) -> Error {
        self.detail = Some(Box::new(detail));
        self
    }

    /// The structured detail, if any.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        self.detail.as_deref()
    }

    /// The cycle path of an [`ErrorCode::Cycle`] error (see [`ErrorDetail::Cycle`]).
    pub fn cycle_path(&self) -> Option<&[PageId]> {
        match self.detail() {
            Some(ErrorDetail::Cycle(path)) => Some(path),
            None => None,
        }
    }

    /// Whether the failed call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        self.code.is_retryable()
    }

    /// Shorthand for an [`ErrorCode::InvalidArgument`] error.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidArgument, message)
    }

    /// Shorthand for an [`ErrorCode::Corruption`] error.
    pub fn corruption(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Corruption, message)
    }

    /// Shorthand for an [`ErrorCode::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::NotFound, message)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        let code = match e.raw_os_error() {
            Some(28) => ErrorCode::NoSpace, // ENOSPC
            _ if e.kind() == std::io::ErrorKind::OutOfMemory => ErrorCode::OutOfMemory,
            _ => ErrorCode::Io,
        };
        Error::new(code, e.to_string())
    }
}

/// The result type of every fallible MMSB call.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_numbers() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_i32(c.as_i32()), Some(c));
        }
        assert_eq!(ErrorCode::from_i32(0), None);
        assert_eq!(ErrorCode::from_i32(9999), None);
    }

    #[test]
    fn codes_are_dense_and_start_at_one() {
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(c.as_i32(), i as i32 + 1, "{c} is out of order");
        }
    }

    #[test]
    fn enospc_maps_to_no_space() {
        let e: Error = std::io::Error::from_raw_os_error(28).into();
        assert_eq!(e.code, ErrorCode::NoSpace);
        let e: Error = std::io::Error::from_raw_os_error(5).into();
        assert_eq!(e.code, ErrorCode::Io);
    }
}

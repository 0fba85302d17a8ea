//! Status codes, location and dtype numbers as C constants.
//!
//! These mirror `mmsb_core::ErrorCode`, `PageLocation` and `DType`; a test
//! checks that each constant equals its Rust counterpart, so the header, the
//! generated Julia bindings and the engine can never disagree.

/// Success.
pub const MMSB_OK: i32 = 0;
/// An argument is malformed (range outside a page, length mismatch, null pointer).
pub const MMSB_ERR_INVALID_ARGUMENT: i32 = 1;
/// The named page, key or object does not exist.
pub const MMSB_ERR_NOT_FOUND: i32 = 2;
/// A handle is null, stale (freed) or forged.
pub const MMSB_ERR_INVALID_HANDLE: i32 = 3;
/// An allocation failed (retryable).
pub const MMSB_ERR_OUT_OF_MEMORY: i32 = 4;
/// An I/O operation failed.
pub const MMSB_ERR_IO: i32 = 5;
/// Stored data is structurally invalid.
pub const MMSB_ERR_CORRUPTION: i32 = 6;
/// Stored data failed its checksum.
pub const MMSB_ERR_CHECKSUM_MISMATCH: i32 = 7;
/// A dependency edge would close a cycle.
pub const MMSB_ERR_CYCLE: i32 = 8;
/// An optimistic transaction lost to a concurrent commit (retryable).
pub const MMSB_ERR_TRANSACTION_CONFLICT: i32 = 9;
/// A commit-time invariant rejected the commit.
pub const MMSB_ERR_INVARIANT_VIOLATION: i32 = 10;
/// No usable GPU.
pub const MMSB_ERR_GPU_UNAVAILABLE: i32 = 11;
/// A GPU call failed (retryable).
pub const MMSB_ERR_GPU_ERROR: i32 = 12;
/// The memory budget is exhausted (retryable).
pub const MMSB_ERR_MEMORY_PRESSURE: i32 = 13;
/// A bug in MMSB (broken invariant or caught panic).
pub const MMSB_ERR_INTERNAL: i32 = 14;
/// A compare-and-set delta expected an epoch that is no longer current (retryable).
pub const MMSB_ERR_EPOCH_MISMATCH: i32 = 15;
/// Valid, but not supported by this build or object.
pub const MMSB_ERR_UNSUPPORTED: i32 = 16;
/// An output buffer is too small; the needed size was written to the length out-parameter.
pub const MMSB_ERR_BUFFER_TOO_SMALL: i32 = 17;
/// The disk is full.
pub const MMSB_ERR_NO_SPACE: i32 = 18;
/// The object is read-only.
pub const MMSB_ERR_READ_ONLY: i32 = 19;

/// Page location: host memory.
pub const MMSB_LOCATION_CPU: u8 = 0;
/// Page location: GPU device memory.
pub const MMSB_LOCATION_GPU: u8 = 1;
/// Page location: unified (managed) memory.
pub const MMSB_LOCATION_UNIFIED: u8 = 2;

/// No numeric view.
pub const MMSB_DTYPE_NONE: u8 = 0;
/// Numeric view element: u8.
pub const MMSB_DTYPE_U8: u8 = 1;
/// Numeric view element: i32.
pub const MMSB_DTYPE_I32: u8 = 2;
/// Numeric view element: i64.
pub const MMSB_DTYPE_I64: u8 = 3;
/// Numeric view element: f32.
pub const MMSB_DTYPE_F32: u8 = 4;
/// Numeric view element: f64.
pub const MMSB_DTYPE_F64: u8 = 5;
/// Numeric view element: bool (one byte).
pub const MMSB_DTYPE_BOOL: u8 = 6;
/// Numeric view element: u32.
pub const MMSB_DTYPE_U32: u8 = 7;
/// Numeric view element: u64.
pub const MMSB_DTYPE_U64: u8 = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use mmsb_core::{DType, ErrorCode, PageLocation};

    #[test]
    fn constants_match_the_engine() {
        let pairs = [
            (MMSB_ERR_INVALID_ARGUMENT, ErrorCode::InvalidArgument),
            (MMSB_ERR_NOT_FOUND, ErrorCode::NotFound),
            (MMSB_ERR_INVALID_HANDLE, ErrorCode::InvalidHandle),
            (MMSB_ERR_OUT_OF_MEMORY, ErrorCode::OutOfMemory),
            (MMSB_ERR_IO, ErrorCode::Io),
            (MMSB_ERR_CORRUPTION, ErrorCode::Corruption),
            (MMSB_ERR_CHECKSUM_MISMATCH, ErrorCode::ChecksumMismatch),
            (MMSB_ERR_CYCLE, ErrorCode::Cycle),
            (
                MMSB_ERR_TRANSACTION_CONFLICT,
                ErrorCode::TransactionConflict,
            ),
            (MMSB_ERR_INVARIANT_VIOLATION, ErrorCode::InvariantViolation),
            (MMSB_ERR_GPU_UNAVAILABLE, ErrorCode::GpuUnavailable),
            (MMSB_ERR_GPU_ERROR, ErrorCode::GpuError),
            (MMSB_ERR_MEMORY_PRESSURE, ErrorCode::MemoryPressure),
            (MMSB_ERR_INTERNAL, ErrorCode::Internal),
            (MMSB_ERR_EPOCH_MISMATCH, ErrorCode::EpochMismatch),
            (MMSB_ERR_UNSUPPORTED, ErrorCode::Unsupported),
            (MMSB_ERR_BUFFER_TOO_SMALL, ErrorCode::BufferTooSmall),
            (MMSB_ERR_NO_SPACE, ErrorCode::NoSpace),
            (MMSB_ERR_READ_ONLY, ErrorCode::ReadOnly),
        ];
        assert_eq!(
            pairs.len(),
            ErrorCode::ALL.len(),
            "a code has no C constant"
        );
        for (c, e) in pairs {
            assert_eq!(c, e.as_i32(), "{e}");
        }
        assert_eq!(MMSB_LOCATION_CPU, PageLocation::Cpu as u8);
        assert_eq!(MMSB_LOCATION_GPU, PageLocation::Gpu as u8);
        assert_eq!(MMSB_LOCATION_UNIFIED, PageLocation::Unified as u8);
        let dtypes = [
            (MMSB_DTYPE_U8, DType::U8),
            (MMSB_DTYPE_I32, DType::I32),
            (MMSB_DTYPE_I64, DType::I64),
            (MMSB_DTYPE_F32, DType::F32),
            (MMSB_DTYPE_F64, DType::F64),
            (MMSB_DTYPE_BOOL, DType::Bool),
            (MMSB_DTYPE_U32, DType::U32),
            (MMSB_DTYPE_U64, DType::U64),
        ];
        assert_eq!(dtypes.len(), DType::ALL.len());
        for (c, d) in dtypes {
            assert_eq!(c, d as u8, "{}", d.name());
        }
    }
}

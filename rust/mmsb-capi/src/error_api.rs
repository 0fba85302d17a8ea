//! Error reporting across the C boundary.

use crate::ffi_util::{call, last_error_ptr, out};
use mmsb_core::{Error, ErrorCode};
use std::ffi::c_char;

/// Writes a pointer to this thread's last error message ("Code: what went wrong")
/// into `*out_message`. The string is owned by the library and stays valid until
/// the next failing call on this thread; copy it if you need it longer. The
/// message is empty if no call on this thread has failed.
///
/// # Safety
/// `out_message` is null or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn mmsb_last_error_message(out_message: *mut *const c_char) -> i32 {
    let p = last_error_ptr();
    // SAFETY: caller contract above.
    call(|| unsafe { out(out_message, p, "out_message") })
}

/// Writes the stable name of a status code ("Ok", "InvalidArgument", ...) into
/// `*out_name` (a static string). An unknown code fails with
/// `MMSB_ERR_INVALID_ARGUMENT` and writes nothing.
///
/// # Safety
/// `out_name` is null or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn mmsb_error_name(code: i32, out_name: *mut *const c_char) -> i32 {
    call(|| {
        let name: &'static [u8] = if code == 0 {
            b"Ok\0"
        } else {
            match ErrorCode::from_i32(code) {
                Some(c) => NAMES[(c.as_i32() - 1) as usize],
                None => return Err(Error::invalid(format!("unknown status code {code}"))),
            }
        };
        // SAFETY: caller contract above; the string is static and NUL-terminated.
        unsafe { out(out_name, name.as_ptr().cast::<c_char>(), "out_name") }
    })
}

/// Writes whether a status code is retryable (1) or fatal (0) into `*out_retryable`.
/// `MMSB_OK` is not retryable; an unknown code fails with `MMSB_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `out_retryable` is null or valid for writing one bool.
#[no_mangle]
pub unsafe extern "C" fn mmsb_error_is_retryable(code: i32, out_retryable: *mut bool) -> i32 {
    call(|| {
        let retryable = if code == 0 {
            false
        } else {
            ErrorCode::from_i32(code)
                .ok_or_else(|| Error::invalid(format!("unknown status code {code}")))?
                .is_retryable()
        };
        // SAFETY: caller contract above.
        unsafe { out(out_retryable, retryable, "out_retryable") }
    })
}

/// Writes the library version into the three out-parameters.
///
/// # Safety
/// Each pointer is null or valid for writing one u32.
#[no_mangle]
pub unsafe extern "C" fn mmsb_version(
    out_major: *mut u32,
    out_minor: *mut u32,
    out_patch: *mut u32,
) -> i32 {
    call(|| {
        let parse = |s: &str| s.parse::<u32>().unwrap_or(0);
        crate::ffi_util::need_out(out_major, "out_major")?;
        crate::ffi_util::need_out(out_minor, "out_minor")?;
        crate::ffi_util::need_out(out_patch, "out_patch")?;
        // SAFETY: caller contract above; all three checked non-null.
        unsafe {
            out(
                out_major,
                parse(env!("CARGO_PKG_VERSION_MAJOR")),
                "out_major",
            )?;
            out(
                out_minor,
                parse(env!("CARGO_PKG_VERSION_MINOR")),
                "out_minor",
            )?;
            out(
                out_patch,
                parse(env!("CARGO_PKG_VERSION_PATCH")),
                "out_patch",
            )
        }
    })
}

/// Writes the number of live handles (stores, deltas, borrows) into `*out_count`:
/// a leak check for bindings and tests.
///
/// # Safety
/// `out_count` is null or valid for writing one u64.
#[no_mangle]
pub unsafe extern "C" fn mmsb_live_handles(out_count: *mut u64) -> i32 {
    let n = crate::handle::live_count() as u64;
    // SAFETY: caller contract above.
    call(|| unsafe { out(out_count, n, "out_count") })
}

const NAMES: [&[u8]; 19] = [
    b"InvalidArgument\0",
    b"NotFound\0",
    b"InvalidHandle\0",
    b"OutOfMemory\0",
    b"Io\0",
    b"Corruption\0",
    b"ChecksumMismatch\0",
    b"Cycle\0",
    b"TransactionConflict\0",
    b"InvariantViolation\0",
    b"GpuUnavailable\0",
    b"GpuError\0",
    b"MemoryPressure\0",
    b"Internal\0",
    b"EpochMismatch\0",
    b"Unsupported\0",
    b"BufferTooSmall\0",
    b"NoSpace\0",
    b"ReadOnly\0",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_names_match_the_engine() {
        assert_eq!(NAMES.len(), ErrorCode::ALL.len());
        for c in ErrorCode::ALL {
            let n = NAMES[(c.as_i32() - 1) as usize];
            assert_eq!(&n[..n.len() - 1], c.name().as_bytes());
        }
    }
}

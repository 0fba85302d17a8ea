//! The rules every exported function follows, in one place.
//!
//! [`call`] runs a function body, catches any panic (no unwinding crosses the
//! C boundary), stores the error message in a thread-local for
//! `mmsb_last_error_message`, and returns the status code. The pointer helpers
//! turn null pointers, impossible lengths and bad UTF-8 into
//! `InvalidArgument` errors before any memory is touched.

use mmsb_core::{Error, ErrorCode, PageId, Result};
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_CYCLE: RefCell<Vec<PageId>> = const { RefCell::new(Vec::new()) };
}

/// Records `e` as this thread's last error (and its cycle, if it is a cycle error).
pub(crate) fn set_last_error(e: &Error) {
    let text = format!("{}: {}", e.code.name(), e.message).replace('\0', "\\0");
    let c = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
    set_last_cycle_path(e.cycle_path().map(<[PageId]>::to_vec).unwrap_or_default());
}

/// The cycle of this thread's last error (empty if it was not a cycle error).
pub(crate) fn last_cycle_path() -> Vec<PageId> {
    LAST_CYCLE.with(|c| c.borrow().clone())
}

/// Sets the cycle `last_cycle_path` returns.
pub(crate) fn set_last_cycle_path(path: Vec<PageId>) {
    LAST_CYCLE.with(|c| *c.borrow_mut() = path);
}

/// Pointer to this thread's last error message (valid until the next failing call on this thread).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// Runs `f`, mapping its result (or a panic) to a status code.
pub(crate) fn call<F: FnOnce() -> Result<()>>(f: F) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            set_last_error(&e);
            e.code.as_i32()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            let e = Error::new(
                ErrorCode::Internal,
                format!("internal panic caught: {what}"),
            );
            set_last_error(&e);
            e.code.as_i32()
        }
    }
}

fn null(what: &str) -> Error {
    Error::invalid(format!("{what} is a null pointer"))
}

/// Writes `value` through an out-pointer.
/// # Safety
/// `ptr` is null or valid for writing one `T`.
pub(crate) unsafe fn out<T>(ptr: *mut T, value: T, what: &str) -> Result<()> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-null checked above; the C contract says out-pointers point to
    // writable, aligned storage for one T (documented in the header).
    unsafe { ptr.write(value) };
    Ok(())
}

/// Checks an out-pointer without writing it (so no output is written on failure).
pub(crate) fn need_out<T>(ptr: *mut T, what: &str) -> Result<()> {
    if ptr.is_null() {
        Err(null(what))
    } else {
        Ok(())
    }
}

fn check_len(len: u64, elem: usize, what: &str) -> Result<usize> {
    usize::try_from(len)
        .ok()
        .filter(|&n| {
            n.checked_mul(elem)
                .is_some_and(|b| b <= isize::MAX as usize)
        })
        .ok_or_else(|| Error::invalid(format!("{what} length {len} is impossibly large")))
}

/// A borrowed input slice; a null pointer is allowed only with length 0.
/// # Safety
/// `ptr` is null or valid for reading `len` elements for `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: u64, what: &str) -> Result<&'a [T]> {
    let n = check_len(len, std::mem::size_of::<T>(), what)?;
    if ptr.is_null() {
        return if n == 0 { Ok(&[]) } else { Err(null(what)) };
    }
    if n == 0 {
        return Ok(&[]);
    }
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::invalid(format!(
            "{what} is not aligned for its element type"
        )));
    }
    // SAFETY: non-null and aligned (checked); the caller guarantees `len`
    // readable elements (the C contract); the length fits isize (checked).
    Ok(unsafe { std::slice::from_raw_parts(ptr, n) })
}

/// A borrowed output slice; a null pointer is allowed only with length 0.
/// # Safety
/// `ptr` is null or valid for writing `len` elements for `'a`, unaliased.
pub(crate) unsafe fn slice_mut<'a, T>(ptr: *mut T, len: u64, what: &str) -> Result<&'a mut [T]> {
    let n = check_len(len, std::mem::size_of::<T>(), what)?;
    if ptr.is_null() {
        return if n == 0 { Ok(&mut []) } else { Err(null(what)) };
    }
    if n == 0 {
        return Ok(&mut []);
    }
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::invalid(format!(
            "{what} is not aligned for its element type"
        )));
    }
    // SAFETY: as in `slice`, and the caller guarantees the memory is writable and
    // not aliased during the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, n) })
}

/// A NUL-terminated UTF-8 input string.
/// # Safety
/// `ptr` is null or a NUL-terminated string living for `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-null; the caller guarantees a NUL-terminated string that lives
    // for the call (the C contract).
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str()
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// Copies `bytes` into a caller buffer of `cap` bytes, reporting the size needed.
/// With `buf` null and `cap` 0 it only reports the size. Too small a buffer is
/// `BufferTooSmall` and writes nothing but `out_len`.
/// # Safety
/// `buf` is null or valid for writing `cap` bytes; `out_len` is null or valid for one u64.
pub(crate) unsafe fn copy_out(
    bytes: &[u8],
    buf: *mut u8,
    cap: u64,
    out_len: *mut u64,
) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    unsafe { out(out_len, bytes.len() as u64, "out_len")? };
    if buf.is_null() && cap == 0 {
        return Ok(());
    }
    if (bytes.len() as u64) > cap {
        return Err(Error::new(
            ErrorCode::BufferTooSmall,
            format!("buffer of {cap} bytes is too small; {} needed", bytes.len()),
        ));
    }
    // SAFETY: forwarded from this function's contract; len <= cap (checked).
    let dst = unsafe { slice_mut(buf, bytes.len() as u64, "buf")? };
    dst.copy_from_slice(bytes);
    Ok(())
}

/// # Safety
/// `buf` is null or valid for `cap` u64 writes; `out_count` is valid for one write.
pub(crate) unsafe fn copy_ids(
    ids: &[PageId],
    buf: *mut u64,
    cap: u64,
    out_count: *mut u64,
) -> Result<()> {
    let n = ids.len() as u64;
    // SAFETY: forwarded from this function's contract.
    unsafe { out(out_count, n, "out_count")? };
    if buf.is_null() && cap == 0 {
        return Ok(());
    }
    if n > cap {
        return Err(Error::new(
            ErrorCode::BufferTooSmall,
            format!("buffer of {cap} ids is too small; {n} needed"),
        ));
    }
    // SAFETY: forwarded from this function's contract; n <= cap.
    let dst = unsafe { slice_mut(buf, n, "buf")? };
    for (d, id) in dst.iter_mut().zip(ids) {
        *d = id.0;
    }
    Ok(())
}

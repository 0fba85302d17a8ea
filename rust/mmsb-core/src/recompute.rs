//! Recompute functions: how a derived page is computed from its data parents.
//!
//! A derived page has one [`RecomputeFn`]. During a wave it is called with a
//! [`RecomputeInputs`]: the bytes of the page's data parents (in the order their
//! data edges were added), the epochs those bytes will have once the commit is
//! applied, and an output buffer of the page's size that starts out holding the
//! page's current bytes. The function writes the new bytes into the buffer; the
//! engine compares them with the old ones (cutoff) and turns any difference
//! into a derived delta. A function that fails aborts the whole commit.
//!
//! Four flavours:
//!
//! * [`RecomputeFn::rust`]: a Rust closure (run in parallel with other pages of
//!   the same topological level, so it must be `Send + Sync`);
//! * [`RecomputeFn::c_function`]: a C function pointer with a user-data
//!   pointer, the shape Julia's `@cfunction` produces ([`CRecomputeFn`]);
//! * [`RecomputeFn::Passthrough`]: copy the first input;
//! * [`RecomputeFn::Transform`]: a named byte transform of the first input
//!   ([`ByteTransform`]).
//!
//! Functions must be deterministic functions of their inputs (and of the
//! buffer's starting bytes, if they read them): the engine's result is defined
//! as equal to recomputing every page from scratch in topological order, and
//! replay relies on logged derived deltas rather than on running code again.

use crate::error::{Error, ErrorCode, Result};
use crate::page_id::PageId;
use std::ffi::c_void;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// The id of a registered recompute function (unique for the engine's life).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunctionId(pub u64);

impl fmt::Display for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fn#{}", self.0)
    }
}

/// What a recompute function sees.
#[derive(Debug)]
pub struct RecomputeInputs<'a> {
    /// The page being recomputed.
    pub page: PageId,
    /// Its data parents, in the order their edges were added.
    pub parents: &'a [PageId],
    /// The parents' bytes, one slice per parent, as they will be after the commit.
    pub inputs: &'a [&'a [u8]],
    /// The parents' epochs, as they will be after the commit.
    pub epochs: &'a [u64],
}

/// The C shape of a recompute function (what Julia's `@cfunction` gives).
///
/// `inputs[i]` points at `input_lens[i]` bytes of the i-th parent; `out`
/// points at the page's `out_len` bytes (holding the current bytes). Return
/// 0 on success; any other value fails the commit (a known MMSB error code
/// keeps its meaning, anything else is reported as `InvalidArgument`).
pub type CRecomputeFn = unsafe extern "C" fn(
    user_data: *mut c_void,
    inputs: *const *const u8,
    input_lens: *const u64,
    n_inputs: u64,
    out: *mut u8,
    out_len: u64,
) -> i32;

/// A Rust recompute closure: reads the inputs, writes the page's new bytes.
pub type RustRecomputeFn = dyn Fn(&RecomputeInputs<'_>, &mut [u8]) -> Result<()> + Send + Sync;

/// A named elementwise byte transform of the first input.
#[derive(Clone, Copy)]
pub enum ByteTransform {
    /// `out[i] = in[i] ^ k`.
    XorConst(u8),
    /// `out[i] = in[i].wrapping_add(k)`.
    AddConst(u8),
    /// `out[i] = f(in[i])`, with a name for logs and debugging.
    Map(&'static str, fn(u8) -> u8),
}

impl ByteTransform {
    /// The transform's name (`xor-const`, `add-const`, or the map's name).
    pub fn name(&self) -> &'static str {
        match self {
            ByteTransform::XorConst(_) => "xor-const",
            ByteTransform::AddConst(_) => "add-const",
            ByteTransform::Map(n, _) => n,
        }
    }

    /// Applies the transform to one byte.
    pub fn apply(&self, b: u8) -> u8 {
        match *self {
            ByteTransform::XorConst(k) => b ^ k,
            ByteTransform::AddConst(k) => b.wrapping_add(k),
            ByteTransform::Map(_, f) => f(b),
        }
    }
}

impl fmt::Debug for ByteTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteTransform::XorConst(k) => write!(f, "XorConst({k})"),
            ByteTransform::AddConst(k) => write!(f, "AddConst({k})"),
            ByteTransform::Map(n, _) => write!(f, "Map({n})"),
        }
    }
}

/// A user-data pointer handed back to a C recompute function.
#[derive(Clone, Copy, Debug)]
pub struct UserData(pub *mut c_void);

// SAFETY: `UserData` is only ever built through the `unsafe`
// `RecomputeFn::c_function`, whose caller promises that the pointer may be
// used from any thread, concurrently when `thread_safe` is set, and otherwise
// the engine calls the function from one thread at a time.
unsafe impl Send for UserData {}
// SAFETY: as for `Send` above.
unsafe impl Sync for UserData {}

/// How a derived page is recomputed. See the module docs.
#[derive(Clone)]
pub enum RecomputeFn {
    /// A Rust closure.
    Rust(Arc<RustRecomputeFn>),
    /// A C function and its user data.
    C {
        /// The function.
        func: CRecomputeFn,
        /// Passed back as the first argument.
        user_data: UserData,
        /// Whether calls may run concurrently on several threads.
        thread_safe: bool,
    },
    /// Copies the first input (the common prefix, if sizes differ).
    Passthrough,
    /// Transforms the first input byte by byte (the common prefix, if sizes differ).
    Transform(ByteTransform),
}

impl fmt::Debug for RecomputeFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecomputeFn::Rust(_) => f.write_str("Rust(..)"),
            RecomputeFn::C { thread_safe, .. } => write!(f, "C {{ thread_safe: {thread_safe} }}"),
            RecomputeFn::Passthrough => f.write_str("Passthrough"),
            RecomputeFn::Transform(t) => write!(f, "Transform({t:?})"),
        }
    }
}

impl RecomputeFn {
    /// A Rust closure that writes the new bytes into the buffer.
    pub fn rust(
        f: impl Fn(&RecomputeInputs<'_>, &mut [u8]) -> Result<()> + Send + Sync + 'static,
    ) -> RecomputeFn {
        RecomputeFn::Rust(Arc::new(f))
    }

    /// A Rust closure that returns the new bytes (exactly the page's size).
    pub fn rust_bytes(
        f: impl Fn(&RecomputeInputs<'_>) -> Result<Vec<u8>> + Send + Sync + 'static,
    ) -> RecomputeFn {
        RecomputeFn::rust(move |inp, out| {
            let v = f(inp)?;
            if v.len() != out.len() {
                return Err(Error::invalid(format!(
                    "recompute of {} returned {} bytes, the page has {}",
                    inp.page,
                    v.len(),
                    out.len()
                )));
            }
            out.copy_from_slice(&v);
            Ok(())
        })
    }

    /// Wraps a C function pointer and its user data.
    ///
    /// # Safety
    ///
    /// `func` must be safe to call with `user_data`, valid input pointers and
    /// lengths and a valid output buffer, for as long as it stays registered;
    /// it must not keep the pointers after returning. If `thread_safe` is
    /// true it must also be safe to call from any thread, concurrently.
    pub unsafe fn c_function(
        func: CRecomputeFn,
        user_data: *mut c_void,
        thread_safe: bool,
    ) -> RecomputeFn {
        RecomputeFn::C {
            func,
            user_data: UserData(user_data),
            thread_safe,
        }
    }

    /// A short name for provenance (`rust`, `c`, `passthrough`, the transform's name).
    pub fn name(&self) -> &'static str {
        match self {
            RecomputeFn::Rust(_) => "rust",
            RecomputeFn::C { .. } => "c",
            RecomputeFn::Passthrough => "passthrough",
            RecomputeFn::Transform(t) => t.name(),
        }
    }

    /// Whether calls may run on several threads at once.
    pub fn is_thread_safe(&self) -> bool {
        match self {
            RecomputeFn::C { thread_safe, .. } => *thread_safe,
            _ => true,
        }
    }

    /// Runs the function. A panic inside it becomes an `Internal` error; any
    /// error is reported naming the page.
    pub fn call(&self, inputs: &RecomputeInputs<'_>, out: &mut [u8]) -> Result<()> {
        let page = inputs.page;
        let r = catch_unwind(AssertUnwindSafe(|| self.call_inner(inputs, out)));
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error {
                message: format!("recompute of {page} failed: {}", e.message),
                ..e
            }),
            Err(_) => Err(Error::new(
                ErrorCode::Internal,
                format!("recompute of {page} panicked"),
            )),
        }
    }

    fn call_inner(&self, inputs: &RecomputeInputs<'_>, out: &mut [u8]) -> Result<()> {
        match self {
            RecomputeFn::Rust(f) => f(inputs, out),
            RecomputeFn::Passthrough => {
                let src = first(inputs)?;
                let n = src.len().min(out.len());
                out[..n].copy_from_slice(&src[..n]);
                Ok(())
            }
            RecomputeFn::Transform(t) => {
                let src = first(inputs)?;
                for (o, &i) in out.iter_mut().zip(src) {
                    *o = t.apply(i);
                }
                Ok(())
            }
            RecomputeFn::C {
                func, user_data, ..
            } => {
                let ptrs: Vec<*const u8> = inputs.inputs.iter().map(|s| s.as_ptr()).collect();
                let lens: Vec<u64> = inputs.inputs.iter().map(|s| s.len() as u64).collect();
                // SAFETY: `ptrs[i]` points at `lens[i]` readable bytes borrowed
                // for this call; `out` is a live exclusive buffer of `out.len()`
                // bytes; the caller of `c_function` promised the function is
                // safe to call with such arguments and its user data.
                let rc = unsafe {
                    func(
                        user_data.0,
                        ptrs.as_ptr(),
                        lens.as_ptr(),
                        ptrs.len() as u64,
                        out.as_mut_ptr(),
                        out.len() as u64,
                    )
                };
                if rc == 0 {
                    Ok(())
                } else {
                    let code = ErrorCode::from_i32(rc).unwrap_or(ErrorCode::InvalidArgument);
                    Err(Error::new(code, format!("C function returned status {rc}")))
                }
            }
        }
    }
}

fn first<'a>(inputs: &RecomputeInputs<'a>) -> Result<&'a [u8]> {
    inputs.inputs.first().copied().ok_or_else(|| {
        Error::invalid(format!(
            "{} has no data parent to copy or transform",
            inputs.page
        ))
    })
}

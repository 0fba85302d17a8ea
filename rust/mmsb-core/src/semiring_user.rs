//! User-defined semirings from C function pointers (the C ABI's slow path).
//!
//! A Rust user-defined semiring implements [`Semiring`] and runs at full
//! speed. A C (or Julia `@cfunction`) caller instead supplies `⊕` and `⊗` as
//! function pointers over elements of a fixed size in bytes, plus the zero
//! and the one as bytes: [`CSemiring<N>`] wraps them as a [`Semiring`] over
//! `[u8; N]`, so the same generic kernels run — with one indirect call per
//! operation, which no compiler can vectorise or inline: expect one to a few
//! nanoseconds per element instead of a fraction of one.
//!
//! [`with_elem_size!`](crate::with_elem_size) picks `N` from a run-time size
//! (1, 2, 4, 8, 16, 32 or 64 bytes).

use crate::error::{Error, Result};
use crate::semiring::{Properties, Semiring};
use std::ffi::c_void;

/// `*out = *a op *b` over elements of the semiring's size: reads that many
/// bytes at `a` and `b`, writes that many at `out`. Must not unwind.
pub type CSemiringOp =
    unsafe extern "C" fn(user_data: *mut c_void, a: *const u8, b: *const u8, out: *mut u8);

/// A semiring over `N`-byte elements whose `⊕` and `⊗` are C function pointers.
#[derive(Clone, Copy, Debug)]
pub struct CSemiring<const N: usize> {
    add: CSemiringOp,
    mul: CSemiringOp,
    zero: [u8; N],
    one: [u8; N],
    props: Properties,
    user_data: *mut c_void,
}

// SAFETY: `CSemiring::new`'s contract makes the caller promise that the
// functions may be called with `user_data` from any thread the semiring is
// used on; the struct holds no other shared state.
unsafe impl<const N: usize> Send for CSemiring<N> {}
// SAFETY: as for `Send`; every method only reads the struct.
unsafe impl<const N: usize> Sync for CSemiring<N> {}

impl<const N: usize> CSemiring<N> {
    /// Wraps the function pointers. `zero` and `one` must have `N` bytes.
    ///
    /// # Safety
    /// For as long as the semiring is used, `add` and `mul` must be safe to
    /// call with `user_data` and pointers to `N` readable bytes (`a`, `b`)
    /// and `N` writable bytes (`out`), from any thread that uses it, and must
    /// not unwind. They should satisfy the semiring laws; `props` must tell
    /// the truth (a non-commutative `⊗` must say so, or folds reorder it).
    pub unsafe fn new(
        add: CSemiringOp,
        mul: CSemiringOp,
        zero: &[u8],
        one: &[u8],
        props: Properties,
        user_data: *mut c_void,
    ) -> Result<Self> {
        let bytes = |v: &[u8], what: &str| -> Result<[u8; N]> {
            v.try_into().map_err(|_| {
                Error::invalid(format!("{what} has {} bytes, elements have {N}", v.len()))
            })
        };
        Ok(CSemiring {
            add,
            mul,
            zero: bytes(zero, "zero")?,
            one: bytes(one, "one")?,
            props,
            user_data,
        })
    }

    #[inline(always)]
    fn call(&self, f: CSemiringOp, a: [u8; N], b: [u8; N]) -> [u8; N] {
        let mut out = [0u8; N];
        // SAFETY: `new`'s contract: `f` reads N bytes at each of `a` and `b`
        // and writes N bytes at `out`, all of which are live local arrays.
        unsafe { f(self.user_data, a.as_ptr(), b.as_ptr(), out.as_mut_ptr()) };
        out
    }
}

impl<const N: usize> Semiring for CSemiring<N> {
    type Elem = [u8; N];
    fn zero(&self) -> [u8; N] {
        self.zero
    }
    fn one(&self) -> [u8; N] {
        self.one
    }
    fn add(&self, a: [u8; N], b: [u8; N]) -> [u8; N] {
        self.call(self.add, a, b)
    }
    fn mul(&self, a: [u8; N], b: [u8; N]) -> [u8; N] {
        self.call(self.mul, a, b)
    }
    fn properties(&self) -> Properties {
        self.props
    }
}

/// Runs `body` with the const `N` bound to a run-time element size:
/// `with_elem_size!(size, |N| body)` where `body` evaluates to a
/// `Result<_, Error>`; sizes other than 1, 2, 4, 8, 16, 32 and 64 are an
/// `InvalidArgument` error.
#[macro_export]
macro_rules! with_elem_size {
    ($size:expr, |$n:ident| $body:expr) => {{
        match $size {
            1 => {
                const $n: usize = 1;
                $body
            }
            2 => {
                const $n: usize = 2;
                $body
            }
            4 => {
                const $n: usize = 4;
                $body
            }
            8 => {
                const $n: usize = 8;
                $body
            }
            16 => {
                const $n: usize = 16;
                $body
            }
            32 => {
                const $n: usize = 32;
                $body
            }
            64 => {
                const $n: usize = 64;
                $body
            }
            other => Err($crate::error::Error::invalid(format!(
                "a user semiring element has {other} bytes; use 1, 2, 4, 8, 16, 32 or 64"
            ))),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semiring::{MinPlus, Semiring};
    use crate::semiring_kernels as sk;

    unsafe extern "C" fn min_i32(_: *mut c_void, a: *const u8, b: *const u8, out: *mut u8) {
        // SAFETY: the semiring passes 4 readable bytes at a and b, 4 writable at out.
        unsafe {
            let x = i32::from_le_bytes(*(a as *const [u8; 4]));
            let y = i32::from_le_bytes(*(b as *const [u8; 4]));
            *(out as *mut [u8; 4]) = x.min(y).to_le_bytes();
        }
    }

    unsafe extern "C" fn plus_i32(ud: *mut c_void, a: *const u8, b: *const u8, out: *mut u8) {
        // SAFETY: as above; `ud` points to a live counter (the test owns it).
        unsafe {
            *(ud as *mut u64) += 1;
            let x = i32::from_le_bytes(*(a as *const [u8; 4]));
            let y = i32::from_le_bytes(*(b as *const [u8; 4]));
            let r = if x == i32::MAX || y == i32::MAX {
                i32::MAX
            } else {
                x.saturating_add(y)
            };
            *(out as *mut [u8; 4]) = r.to_le_bytes();
        }
    }

    #[test]
    fn a_c_min_plus_semiring_equals_the_builtin() {
        let mut calls = 0u64;
        let builtin = MinPlus::<i32>::new();
        // SAFETY: the functions read/write 4 bytes and do not unwind; `calls`
        // outlives the semiring and is used on this thread only.
        let c = unsafe {
            CSemiring::<4>::new(
                min_i32,
                plus_i32,
                &i32::MAX.to_le_bytes(),
                &0i32.to_le_bytes(),
                builtin.properties(),
                (&mut calls as *mut u64).cast(),
            )
        }
        .unwrap();
        let x: Vec<i32> = (0..1000).map(|i| (i * 7919) % 1000).collect();
        let xb: Vec<[u8; 4]> = x.iter().map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            i32::from_le_bytes(sk::fold_add(&c, &xb)),
            sk::fold_add(&builtin, &x)
        );
        assert_eq!(
            i32::from_le_bytes(sk::fold_mul(&c, &xb)),
            sk::fold_mul(&builtin, &x)
        );
        assert!(calls >= 999);
    }

    #[test]
    fn identities_of_the_wrong_size_are_invalid() {
        // SAFETY: the semiring is never used.
        let r = unsafe {
            CSemiring::<8>::new(
                min_i32,
                min_i32,
                &[0; 4],
                &[0; 8],
                MinPlus::<i32>::new().properties(),
                std::ptr::null_mut(),
            )
        };
        assert!(r.is_err());
        let r: Result<usize> = crate::with_elem_size!(3usize, |N| Ok(N));
        assert!(r.is_err());
        let r: Result<usize> = crate::with_elem_size!(16usize, |N| Ok(N));
        assert_eq!(r.unwrap(), 16);
    }
}

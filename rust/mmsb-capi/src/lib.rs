//! # libmmsb: the MMSB C ABI
//!
//! The engine as a plain C library, for Julia (`ccall`), C and anything else
//! with an FFI. The header `include/mmsb.h` is generated from this crate by
//! cbindgen and checked in; a test fails when it is stale.
//!
//! The rules every function keeps:
//!
//! * It returns an `int32_t` status: `MMSB_OK` (0) or an error code from the
//!   shared taxonomy (`MMSB_ERR_*`, the numbers of `mmsb_core::ErrorCode`).
//! * Results come back through out-parameters, written only on success.
//! * After a failure, `mmsb_last_error_message` gives this thread's message.
//! * No panic crosses the boundary: one is caught and reported as `MMSB_ERR_INTERNAL`.
//! * Objects are referred to by checked `uint64_t` handles (see [`handle`]):
//!   a null, stale or forged handle is `MMSB_ERR_INVALID_HANDLE`, never undefined behaviour.
//! * Null pointers, impossible lengths and bad UTF-8 are `MMSB_ERR_INVALID_ARGUMENT`.
//! * Every function is thread-safe; a store serialises its own calls.
//!
//! Memory ownership (when to copy, when a borrow ends) is in `docs/api.md`.

pub mod alloc_api;
pub mod delta_api;
pub mod durable_api;
pub mod error_api;
mod ffi_util;
pub mod gpu_api;
pub mod handle;
pub mod page_api;
pub mod propagation_api;
pub mod semiring_api;
pub mod status;
pub mod store_api;
pub mod txn_api;

pub use alloc_api::*;
pub use delta_api::*;
pub use durable_api::*;
pub use error_api::*;
pub use gpu_api::*;
pub use page_api::*;
pub use propagation_api::*;
pub use semiring_api::*;
pub use status::*;
pub use store_api::*;
pub use txn_api::*;

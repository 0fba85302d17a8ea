//! Turning CUDA failures into MMSB errors.
//!
//! Driver and NVRTC failures become [`ErrorCode::GpuError`] (retryable: the
//! work can finish on the CPU); a missing GPU is [`ErrorCode::GpuUnavailable`].

use mmsb_core::error::{Error, ErrorCode};

/// A driver call failed; `what` names the step.
pub fn driver(what: &str, e: cudarc::driver::DriverError) -> Error {
    Error::new(ErrorCode::GpuError, format!("{what}: {e}"))
}

/// A GPU error with a message.
pub fn gpu(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::GpuError, message)
}

/// The GPU is not usable; `why` says what the probe found.
pub fn unavailable(why: impl Into<String>) -> Error {
    Error::new(ErrorCode::GpuUnavailable, why)
}

//! Where a page's bytes live.
//!
//! A page is in CPU memory, GPU device memory, or unified (managed) memory that
//! both can reach. The tag is part of the page's identity in the log, so a page
//! restored from a checkpoint returns to the same kind of memory. Today only
//! [`PageLocation::Cpu`] is backed; creating a GPU or unified page reports
//! [`ErrorCode::Unsupported`](crate::ErrorCode::Unsupported) until the GPU layer lands.

use crate::error::{Error, Result};

/// The memory a page lives in. The discriminants are stable (C ABI, log format).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageLocation {
    /// Host memory.
    Cpu = 0,
    /// GPU device memory.
    Gpu = 1,
    /// CUDA managed memory, reachable from host and device.
    Unified = 2,
}

impl PageLocation {
    /// The location with this stable number.
    pub fn from_u8(n: u8) -> Result<PageLocation> {
        match n {
            0 => Ok(PageLocation::Cpu),
            1 => Ok(PageLocation::Gpu),
            2 => Ok(PageLocation::Unified),
            _ => Err(Error::invalid(format!(
                "unknown page location {n} (0 = cpu, 1 = gpu, 2 = unified)"
            ))),
        }
    }

    /// The lower-case name used by the CLI and Julia (`:cpu`, `:gpu`, `:unified`).
    pub fn name(self) -> &'static str {
        match self {
            PageLocation::Cpu => "cpu",
            PageLocation::Gpu => "gpu",
            PageLocation::Unified => "unified",
        }
    }
}

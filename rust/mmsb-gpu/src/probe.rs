//! Finding out, without ever panicking, whether a GPU can be used.
//!
//! cudarc opens the CUDA driver (`libcuda`) and NVRTC lazily and *panics* if a
//! library is missing, so nothing in this crate calls into cudarc before
//! [`probe`](fn@probe) has checked that both libraries load (cudarc's own
//! `is_culib_present`), that the driver initialises, and that it sees a
//! device. The probe also honours `MMSB_GPU_DISABLE=1` (treat the GPU as
//! absent) and runs inside `catch_unwind`, so a broken installation reports
//! "unavailable" instead of taking the process down.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// What the probe found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// The CUDA driver library loads.
    pub driver_present: bool,
    /// The NVRTC library loads.
    pub nvrtc_present: bool,
    /// Devices the driver reports (0 when it does not initialise).
    pub device_count: i32,
    /// Name of device 0, when there is one.
    pub device_name: Option<String>,
    /// Compute capability of device 0 (major, minor).
    pub compute_capability: Option<(i32, i32)>,
    /// The driver's CUDA version (e.g. 13000 for 13.0).
    pub driver_version: Option<i32>,
    /// Why the GPU is unavailable, when it is.
    pub reason: Option<String>,
}

impl Probe {
    /// Whether the GPU path can run (driver, NVRTC and at least one device).
    pub fn available(&self) -> bool {
        self.driver_present && self.nvrtc_present && self.device_count > 0
    }
}

/// The environment switch that makes every probe report "unavailable".
pub const DISABLE_ENV: &str = "MMSB_GPU_DISABLE";

/// Probes for a usable GPU. Never panics, never fails: the answer says why not.
pub fn probe() -> Probe {
    if std::env::var(DISABLE_ENV).is_ok_and(|v| v != "0" && !v.is_empty()) {
        return Probe {
            reason: Some(format!("disabled by {DISABLE_ENV}")),
            ..Probe::default()
        };
    }
    match catch_unwind(AssertUnwindSafe(probe_inner)) {
        Ok(p) => p,
        Err(_) => Probe {
            reason: Some("the CUDA libraries panicked while loading".into()),
            ..Probe::default()
        },
    }
}

fn probe_inner() -> Probe {
    let mut p = Probe {
        // SAFETY: is_culib_present only tries to dlopen the library by name.
        driver_present: unsafe { cudarc::driver::sys::is_culib_present() },
        // SAFETY: as above, for NVRTC.
        nvrtc_present: unsafe { cudarc::nvrtc::sys::is_culib_present() },
        ..Probe::default()
    };
    if !p.driver_present {
        p.reason = Some("no CUDA driver (libcuda) found".into());
        return p;
    }
    if let Err(e) = cudarc::driver::result::init() {
        p.reason = Some(format!("the CUDA driver did not initialise: {e}"));
        return p;
    }
    p.device_count = cudarc::driver::result::device::get_count().unwrap_or(0);
    let mut version = 0i32;
    // SAFETY: the driver is loaded and initialised; `version` is a valid out-pointer.
    if unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }
        == cudarc::driver::sys::CUresult::CUDA_SUCCESS
    {
        p.driver_version = Some(version);
    }
    if p.device_count > 0 {
        if let Ok(dev) = cudarc::driver::result::device::get(0) {
            p.device_name = cudarc::driver::result::device::get_name(dev).ok();
            use cudarc::driver::sys::CUdevice_attribute as A;
            // SAFETY: `dev` is a valid device handle from the initialised driver.
            let major = unsafe {
                cudarc::driver::result::device::get_attribute(
                    dev,
                    A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                )
            };
            // SAFETY: as above.
            let minor = unsafe {
                cudarc::driver::result::device::get_attribute(
                    dev,
                    A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                )
            };
            if let (Ok(a), Ok(b)) = (major, minor) {
                p.compute_capability = Some((a, b));
            }
        }
    } else {
        p.reason = Some("the CUDA driver reports no device".into());
    }
    if !p.nvrtc_present {
        p.reason = Some("NVRTC (libnvrtc) not found: kernels cannot be compiled".into());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_never_panics_and_explains_unavailability() {
        let p = probe();
        if !p.available() {
            assert!(p.reason.is_some());
        }
    }
}

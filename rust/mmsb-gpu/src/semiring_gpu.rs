//! Semiring kernels on the device: fold_add, fold_mul, accumulate, CSR SpMV.
//!
//! The `*_device` functions take device addresses and run on the device's
//! work stream (benchmarks and waves whose data already lives there); the
//! `*_host` ones take host slices, copy in, run, and copy out (checks and
//! one-off calls). Kernel names are `mmsb_<op>_<semiring>_<type>` in
//! `kernels/semiring.cu`; the CPU reference is [`crate::semiring_core`].

use crate::csr::Csr;
use crate::cuda_device::{Arg, CudaDevice};
use crate::kernel_cache::KernelSource;
use crate::semiring_core::{check_accumulate, Elem, ElemType, Semiring};
use mmsb_core::error::Result;

/// Which fold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoldOp {
    /// `⊕` over the elements.
    Add,
    /// `⊗` over the elements.
    Mul,
}

fn kernel_name(op: &str, s: Semiring, t: ElemType) -> String {
    format!("mmsb_{op}_{}_{}", s.name(), t.name())
}

/// Folds `n` elements at `x` into one element at `out` (device addresses).
/// Uses `partials` (at least `fold_blocks(dev, n)` elements) for the first pass.
#[allow(clippy::too_many_arguments)]
pub fn fold_device(
    dev: &CudaDevice,
    op: FoldOp,
    s: Semiring,
    t: ElemType,
    x: u64,
    n: u64,
    partials: u64,
    out: u64,
) -> Result<()> {
    let name = match op {
        FoldOp::Add => kernel_name("fold_add", s, t),
        FoldOp::Mul => kernel_name("fold_mul", s, t),
    };
    let f = dev.function(KernelSource::Semiring, &name)?;
    let blocks = fold_blocks(dev, n);
    dev.launch(
        &f,
        (blocks, 1, 1),
        256,
        &[Arg::U64(x), Arg::U64(n), Arg::U64(partials)],
    )?;
    dev.launch(
        &f,
        (1, 1, 1),
        256,
        &[Arg::U64(partials), Arg::U64(blocks as u64), Arg::U64(out)],
    )
}

/// Blocks of the first fold pass for `n` elements.
pub fn fold_blocks(dev: &CudaDevice, n: u64) -> u32 {
    (n.div_ceil(256)).clamp(1, (dev.sm_count() as u64 * 8).max(1)) as u32
}

/// `c[i] = c[i] ⊕ t[i]` where the mask bit is set (`mask == 0`: everywhere).
pub fn accumulate_device(
    dev: &CudaDevice,
    s: Semiring,
    ty: ElemType,
    c: u64,
    t: u64,
    mask: u64,
    n: u64,
) -> Result<()> {
    let f = dev.function(KernelSource::Semiring, &kernel_name("accumulate", s, ty))?;
    let blocks = n.div_ceil(256).clamp(1, 65535 * 16) as u32;
    dev.launch(
        &f,
        (blocks, 1, 1),
        256,
        &[Arg::U64(c), Arg::U64(t), Arg::U64(mask), Arg::U64(n)],
    )
}

/// Threads that share a row: the largest power of two not above the mean row
/// length, 1 to 32 (measured on H200: 8 or 16 lanes for 16.8 nonzeros a row
/// run 1.4x faster than 32).
pub fn spmv_lanes(nnz: usize, nrows: usize) -> u32 {
    let avg = (nnz / nrows.max(1)).clamp(1, 32) as u32;
    1 << (31 - avg.leading_zeros())
}

/// Device addresses of a CSR matrix.
#[derive(Clone, Copy, Debug)]
pub struct DeviceCsr {
    /// `row_ptr` (u32, nrows + 1).
    pub row_ptr: u64,
    /// `cols` (u32, nnz).
    pub cols: u64,
    /// `vals` (nnz elements).
    pub vals: u64,
    /// Rows.
    pub nrows: u32,
    /// Stored entries.
    pub nnz: u64,
}

/// `y = A ⊗ x` over `s` on the device.
pub fn spmv_device(
    dev: &CudaDevice,
    s: Semiring,
    ty: ElemType,
    a: &DeviceCsr,
    x: u64,
    y: u64,
) -> Result<()> {
    spmv_device_lanes(
        dev,
        s,
        ty,
        a,
        x,
        y,
        spmv_lanes(a.nnz as usize, a.nrows as usize),
    )
}

/// [`spmv_device`] with `lanes` threads per row (a power of two, 1 to 32).
pub fn spmv_device_lanes(
    dev: &CudaDevice,
    s: Semiring,
    ty: ElemType,
    a: &DeviceCsr,
    x: u64,
    y: u64,
    lanes: u32,
) -> Result<()> {
    if !lanes.is_power_of_two() || lanes > 32 {
        return Err(mmsb_core::error::Error::invalid(
            "SpMV lanes must be a power of two from 1 to 32",
        ));
    }
    let f = dev.function(KernelSource::Semiring, &kernel_name("spmv", s, ty))?;
    let threads = a.nrows as u64 * lanes as u64;
    let blocks = threads.div_ceil(256).max(1) as u32;
    dev.launch(
        &f,
        (blocks, 1, 1),
        256,
        &[
            Arg::U64(a.row_ptr),
            Arg::U64(a.cols),
            Arg::U64(a.vals),
            Arg::U64(x),
            Arg::U64(y),
            Arg::U32(a.nrows),
            Arg::U32(lanes),
        ],
    )
}

/// Device buffers freed (to the pool) when dropped.
pub struct Scratch<'a> {
    dev: &'a CudaDevice,
    bufs: Vec<(u64, usize)>,
}

impl<'a> Scratch<'a> {
    /// An empty set of buffers.
    pub fn new(dev: &'a CudaDevice) -> Scratch<'a> {
        Scratch {
            dev,
            bufs: Vec::new(),
        }
    }

    /// A device buffer of `n` bytes.
    pub fn alloc(&mut self, n: usize) -> Result<u64> {
        let p = self.dev.pool().alloc(n.max(1), self.dev.stream())?;
        self.bufs.push((p, n.max(1)));
        Ok(p)
    }

    /// A device buffer holding `bytes`.
    pub fn upload(&mut self, bytes: &[u8]) -> Result<u64> {
        let p = self.alloc(bytes.len())?;
        self.dev.upload_on(self.dev.stream(), p, bytes)?;
        Ok(p)
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let _ = self.dev.sync();
        for &(p, n) in &self.bufs {
            let _ = self.dev.pool().free(p, n, self.dev.stream());
        }
    }
}

/// Reinterprets little-endian bytes as elements.
pub fn from_bytes<T: Elem>(bytes: &[u8]) -> Vec<T> {
    let size = std::mem::size_of::<T>();
    bytes
        .chunks_exact(size)
        // SAFETY: each chunk has exactly size_of::<T>() bytes, T is a plain
        // number type (every bit pattern valid), and read_unaligned copes
        // with any alignment.
        .map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<T>()) })
        .collect()
}

/// Folds a host vector on the device.
pub fn fold_host<T: Elem>(dev: &CudaDevice, op: FoldOp, s: Semiring, x: &[T]) -> Result<T> {
    let size = std::mem::size_of::<T>();
    let mut sc = Scratch::new(dev);
    let xd = sc.upload(T::slice_as_bytes(x))?;
    let partials = sc.alloc(fold_blocks(dev, x.len() as u64) as usize * size)?;
    let out = sc.alloc(size)?;
    fold_device(dev, op, s, T::TYPE, xd, x.len() as u64, partials, out)?;
    let mut b = vec![0u8; size];
    dev.download(out, &mut b)?;
    from_bytes::<T>(&b)
        .pop()
        .ok_or_else(|| crate::gpu_error::gpu("fold returned nothing"))
}

/// Masked accumulate of host vectors on the device.
pub fn accumulate_host<T: Elem>(
    dev: &CudaDevice,
    s: Semiring,
    c: &mut [T],
    t: &[T],
    mask: Option<&[u64]>,
) -> Result<()> {
    check_accumulate(c.len(), t.len(), mask)?;
    let mut sc = Scratch::new(dev);
    let cd = sc.upload(T::slice_as_bytes(c))?;
    let td = sc.upload(T::slice_as_bytes(t))?;
    let md = match mask {
        Some(m) => sc.upload(u64_bytes(m))?,
        None => 0,
    };
    accumulate_device(dev, s, T::TYPE, cd, td, md, c.len() as u64)?;
    let mut b = vec![0u8; std::mem::size_of_val(c)];
    dev.download(cd, &mut b)?;
    c.copy_from_slice(&from_bytes::<T>(&b));
    Ok(())
}

/// Uploads a CSR matrix into `sc`.
pub fn upload_csr<T: Elem>(sc: &mut Scratch<'_>, a: &Csr<T>) -> Result<DeviceCsr> {
    a.validate()?;
    Ok(DeviceCsr {
        row_ptr: sc.upload(u32_bytes(&a.row_ptr))?,
        cols: sc.upload(u32_bytes(&a.cols))?,
        vals: sc.upload(T::slice_as_bytes(&a.vals))?,
        nrows: a.nrows as u32,
        nnz: a.nnz() as u64,
    })
}

/// SpMV of host data on the device.
pub fn spmv_host<T: Elem>(
    dev: &CudaDevice,
    s: Semiring,
    a: &Csr<T>,
    x: &[T],
    y: &mut [T],
) -> Result<()> {
    a.check_spmv(x.len(), y.len())?;
    let mut sc = Scratch::new(dev);
    let ad = upload_csr(&mut sc, a)?;
    let xd = sc.upload(T::slice_as_bytes(x))?;
    let yd = sc.alloc(std::mem::size_of_val(y))?;
    spmv_device(dev, s, T::TYPE, &ad, xd, yd)?;
    let mut b = vec![0u8; std::mem::size_of_val(y)];
    dev.download(yd, &mut b)?;
    y.copy_from_slice(&from_bytes::<T>(&b));
    Ok(())
}

/// The bytes of a `u32` slice.
pub fn u32_bytes(s: &[u32]) -> &[u8] {
    // SAFETY: u32 has no padding; the length is the slice's byte size.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
}

/// The bytes of a `u64` slice.
pub fn u64_bytes(s: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding; the length is the slice's byte size.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spmv_lanes_is_a_power_of_two_not_above_the_mean_row() {
        assert_eq!(spmv_lanes(16_800_000, 1 << 20), 16);
        assert_eq!(spmv_lanes(3, 10), 1);
        assert_eq!(spmv_lanes(1000, 10), 32);
        assert_eq!(spmv_lanes(70, 10), 4);
        assert_eq!(spmv_lanes(0, 0), 1);
    }
}

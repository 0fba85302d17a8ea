//! Numeric views over page bytes.
//!
//! A page is bytes; a [`NumericView`] says how to read them as a vector of one
//! element type ([`DType`]) and length. The view is metadata only: it never
//! changes the bytes, and the semiring layer uses it to type-check numeric
//! deltas. Elements are little-endian and start at byte 0 of the page.
//!
//! [`Element`] ties a Rust type to its dtype and its byte encoding;
//! [`decode`] and [`encode`] convert between page bytes and typed vectors
//! (copies: page bytes carry no alignment promise for the element type).

use crate::error::{Error, Result};
use std::fmt::Debug;

/// Element types of numeric views. The discriminants are stable (C ABI, log format).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// Unsigned 8-bit integer.
    U8 = 1,
    /// Signed 32-bit integer.
    I32 = 2,
    /// Signed 64-bit integer.
    I64 = 3,
    /// IEEE-754 binary32.
    F32 = 4,
    /// IEEE-754 binary64.
    F64 = 5,
    /// Boolean stored as one byte (0 = false, 1 = true).
    Bool = 6,
    /// Unsigned 32-bit integer.
    U32 = 7,
    /// Unsigned 64-bit integer.
    U64 = 8,
}

impl DType {
    /// Every dtype, in numeric order.
    pub const ALL: [DType; 8] = [
        DType::U8,
        DType::I32,
        DType::I64,
        DType::F32,
        DType::F64,
        DType::Bool,
        DType::U32,
        DType::U64,
    ];

    /// The dtype with this stable number.
    pub fn from_u8(n: u8) -> Result<DType> {
        DType::ALL
            .iter()
            .copied()
            .find(|d| *d as u8 == n)
            .ok_or_else(|| Error::invalid(format!("unknown dtype {n}")))
    }

    /// Size of one element in bytes.
    pub fn size(self) -> u64 {
        match self {
            DType::U8 | DType::Bool => 1,
            DType::I32 | DType::F32 | DType::U32 => 4,
            DType::I64 | DType::F64 | DType::U64 => 8,
        }
    }

    /// The lower-case name (`"f64"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::Bool => "bool",
            DType::U32 => "u32",
            DType::U64 => "u64",
        }
    }
}

/// A typed reading of a page: `len` elements of `dtype` starting at byte 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NumericView {
    /// The element type.
    pub dtype: DType,
    /// The number of elements.
    pub len: u64,
}

impl NumericView {
    /// The bytes the view covers.
    pub fn byte_len(&self) -> Option<u64> {
        self.len.checked_mul(self.dtype.size())
    }

    /// Checks that the view fits a page of `page_size` bytes.
    pub fn validate(&self, page_size: u64) -> Result<()> {
        match self.byte_len() {
            Some(b) if b <= page_size => Ok(()),
            _ => Err(Error::invalid(format!(
                "numeric view of {} x {} does not fit a page of {page_size} bytes",
                self.len,
                self.dtype.name()
            ))),
        }
    }
}

/// A Rust type that is the element type of a [`DType`]: every bit pattern of
/// its size is a value, encoded little-endian.
pub trait Element: Copy + PartialEq + Debug + Send + Sync + 'static {
    /// The dtype (`u8` answers [`DType::U8`]; [`DType::Bool`] also reads as `u8`).
    const DTYPE: DType;
    /// Reads one element from exactly `size` bytes.
    fn read_le(bytes: &[u8]) -> Self;
    /// Writes one element into exactly `size` bytes.
    fn write_le(self, out: &mut [u8]);
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            #[inline(always)]
            fn read_le(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
            #[inline(always)]
            fn write_le(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
        }
    };
}

element!(u8, DType::U8);
element!(i32, DType::I32);
element!(i64, DType::I64);
element!(f32, DType::F32);
element!(f64, DType::F64);
element!(u32, DType::U32);
element!(u64, DType::U64);

/// Reads `bytes` as little-endian elements; its length must be a multiple of the element size.
pub fn decode<E: Element>(bytes: &[u8]) -> Result<Vec<E>> {
    let size = std::mem::size_of::<E>();
    if !bytes.len().is_multiple_of(size) {
        return Err(Error::invalid(format!(
            "{} bytes are not a whole number of {} elements",
            bytes.len(),
            E::DTYPE.name()
        )));
    }
    Ok(bytes.chunks_exact(size).map(E::read_le).collect())
}

/// Writes `values` into `out` (exactly `values.len()` elements long).
pub fn encode_into<E: Element>(values: &[E], out: &mut [u8]) -> Result<()> {
    let size = std::mem::size_of::<E>();
    if out.len() != std::mem::size_of_val(values) {
        return Err(Error::invalid(format!(
            "{} bytes do not hold {} {} elements",
            out.len(),
            values.len(),
            E::DTYPE.name()
        )));
    }
    for (v, o) in values.iter().zip(out.chunks_exact_mut(size)) {
        v.write_le(o);
    }
    Ok(())
}

/// The little-endian bytes of `values`.
pub fn encode<E: Element>(values: &[E]) -> Vec<u8> {
    let mut out = vec![0u8; std::mem::size_of_val(values)];
    for (v, o) in values
        .iter()
        .zip(out.chunks_exact_mut(std::mem::size_of::<E>()))
    {
        v.write_le(o);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_round_trip_through_little_endian_bytes() {
        let v = [1.5f64, -0.0, f64::INFINITY];
        let b = encode(&v);
        assert_eq!(b.len(), 24);
        assert_eq!(&b[..8], &1.5f64.to_le_bytes());
        assert_eq!(decode::<f64>(&b).unwrap(), v);
        let mut out = vec![0u8; 8];
        encode_into(&[7i32, -1], &mut out).unwrap();
        assert_eq!(decode::<i32>(&out).unwrap(), vec![7, -1]);
        assert!(decode::<i32>(&out[..7]).is_err());
        assert!(encode_into(&[1i32], &mut out).is_err());
    }

    #[test]
    fn dtype_codes_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_u8(d as u8).unwrap(), d);
        }
        assert!(DType::from_u8(0).is_err());
        assert!(DType::from_u8(9).is_err());
    }
}

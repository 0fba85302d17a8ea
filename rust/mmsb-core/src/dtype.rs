//! Numeric views over page bytes.
//!
//! A page is bytes; a [`NumericView`] says how to read them as a vector of one
//! element type ([`DType`]) and length. The view is metadata only: it never
//! changes the bytes, and the semiring layer uses it to type-check numeric
//! deltas. Elements are little-endian and start at byte 0 of the page.

use crate::error::{Error, Result};

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

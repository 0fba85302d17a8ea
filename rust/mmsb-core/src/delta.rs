//! Deltas: the only way state changes.
//!
//! A [`Delta`] names one page and a byte range in it, an optional bit mask over
//! the range (see [`crate::mask`]), and a payload: *dense* (one byte per byte of
//! the range; bytes whose mask bit is clear are ignored) or *sparse* (only the
//! masked bytes, in order; a sparse delta always has a mask). Applying it sets
//! `page[offset + i] = acc(page[offset + i], payload[i])` wherever the mask is set.
//!
//! Beside the bytes a delta carries what the log and lineage queries need: the
//! [`Accumulator`] (overwrite, or a semiring's `⊕` over numeric elements), a
//! source label, optional intent metadata (a JSON document), an optional expected
//! page epoch (compare-and-set) and a wall-clock timestamp in nanoseconds (for
//! replay-to-time; order is always by LSN, never by timestamp).
//!
//! [`Delta::validate`] checks every structural rule; the store validates before
//! logging or touching anything, so a bad delta leaves no trace.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::mask;
use crate::page::MAX_PAGE_SIZE;
use crate::page_id::PageId;
use crate::semiring::SemiringKind;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest source label, in bytes.
pub const MAX_SOURCE_LEN: usize = 4096;
/// Largest intent document, in bytes.
pub const MAX_INTENT_LEN: usize = 1 << 20;

/// How a payload combines with the page bytes it lands on.
///
/// [`Accumulator::Overwrite`] writes bytes. [`Accumulator::Semiring`] reads the
/// range as elements of `dtype` (little-endian, aligned to the element size
/// from byte 0 of the page) and sets `page[i] = page[i] ⊕ payload[i]` for each
/// masked element, with the `⊕` of the built-in semiring `kind` (see
/// [`crate::semiring`] and [`crate::numeric_delta`]). With a commutative `⊕`,
/// deltas of one accumulator commute: concurrent writers merge in any order.
///
/// The one-byte code (log format, C ABI) is 0 for overwrite and
/// `0x80 | kind << 4 | dtype` for a semiring accumulator ([`Accumulator::code`]).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Accumulator {
    /// `page[i] = payload[i]`.
    #[default]
    Overwrite,
    /// `page[i] = page[i] ⊕ payload[i]`, elementwise over `dtype`.
    Semiring {
        /// The built-in semiring whose `⊕` accumulates.
        kind: SemiringKind,
        /// The element type of the range.
        dtype: DType,
    },
}

impl Accumulator {
    /// The accumulator with this stable code (see [`Accumulator::code`]).
    pub fn from_u8(n: u8) -> Result<Accumulator> {
        match n {
            0 => Ok(Accumulator::Overwrite),
            n if n & 0x80 != 0 => {
                let kind = SemiringKind::from_u8((n >> 4) & 0x7)?;
                let dtype = DType::from_u8(n & 0xf)?;
                let acc = Accumulator::Semiring { kind, dtype };
                acc.check()?;
                Ok(acc)
            }
            _ => Err(Error::invalid(format!("unknown accumulator {n}"))),
        }
    }

    /// The stable one-byte code: 0 for overwrite, `0x80 | kind << 4 | dtype`
    /// for a semiring accumulator.
    pub fn code(self) -> u8 {
        match self {
            Accumulator::Overwrite => 0,
            Accumulator::Semiring { kind, dtype } => 0x80 | ((kind as u8) << 4) | dtype as u8,
        }
    }

    /// Checks that a semiring accumulator names a built-in (kind, dtype) pair.
    pub fn check(self) -> Result<()> {
        match self {
            Accumulator::Overwrite => Ok(()),
            Accumulator::Semiring { kind, dtype } => crate::semiring::properties(kind, dtype)
                .map(|_| ())
                .map_err(|e| Error::invalid(e.message)),
        }
    }
}

/// The bytes a delta writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// One byte per byte of the range.
    Dense(Vec<u8>),
    /// Only the masked bytes, in range order (the delta must have a mask).
    Sparse(Vec<u8>),
}

impl Payload {
    /// The payload bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Payload::Dense(b) | Payload::Sparse(b) => b,
        }
    }

    /// Whether the payload is sparse.
    pub fn is_sparse(&self) -> bool {
        matches!(self, Payload::Sparse(_))
    }
}

/// A change to a byte range of one page. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// The page written.
    pub page: PageId,
    /// First byte of the range within the page.
    pub offset: u64,
    /// Length of the range in bytes (at least 1).
    pub len: u64,
    /// One bit per byte of the range; `None` writes every byte.
    pub mask: Option<Vec<u64>>,
    /// The bytes written.
    pub payload: Payload,
    /// How payload bytes combine with page bytes.
    pub accumulator: Accumulator,
    /// Who wrote it (a subsystem, a user, a derived-page function).
    pub source: String,
    /// Optional intent metadata, a JSON document.
    pub intent: Option<String>,
    /// If set, apply only if the page's epoch equals this (compare-and-set).
    pub expected_epoch: Option<u64>,
    /// Wall-clock time of creation, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Delta {
    fn base(
        page: PageId,
        offset: u64,
        len: u64,
        mask: Option<Vec<u64>>,
        payload: Payload,
    ) -> Delta {
        Delta {
            page,
            offset,
            len,
            mask,
            payload,
            accumulator: Accumulator::Overwrite,
            source: String::new(),
            intent: None,
            expected_epoch: None,
            timestamp_ns: now_ns(),
        }
    }

    /// Writes every byte of `bytes` at `offset`.
    pub fn dense(page: PageId, offset: u64, bytes: Vec<u8>) -> Delta {
        let len = bytes.len() as u64;
        Delta::base(page, offset, len, None, Payload::Dense(bytes))
    }

    /// Writes `bytes[i]` at `offset + i` where bit `i` of `mask` is set.
    pub fn masked(page: PageId, offset: u64, bytes: Vec<u8>, mask: Vec<u64>) -> Delta {
        let len = bytes.len() as u64;
        Delta::base(page, offset, len, Some(mask), Payload::Dense(bytes))
    }

    /// Writes `values` (one per set bit of `mask`, in order) into the `len`-byte range at `offset`.
    pub fn sparse(page: PageId, offset: u64, len: u64, mask: Vec<u64>, values: Vec<u8>) -> Delta {
        Delta::base(page, offset, len, Some(mask), Payload::Sparse(values))
    }

    /// Sets the source label.
    pub fn with_source(mut self, source: impl Into<String>) -> Delta {
        self.source = source.into();
        self
    }

    /// Sets the intent metadata; it must be a JSON document.
    pub fn with_intent(mut self, json: impl Into<String>) -> Result<Delta> {
        let json = json.into();
        check_intent(&json)?;
        self.intent = Some(json);
        Ok(self)
    }

    /// Makes the delta conditional on the page being at `epoch`.
    pub fn with_expected_epoch(mut self, epoch: u64) -> Delta {
        self.expected_epoch = Some(epoch);
        self
    }

    /// The number of bytes the delta writes (set mask bits, or the range length).
    pub fn written_bytes(&self) -> u64 {
        match &self.mask {
            Some(m) => mask::count_ones(m),
            None => self.len,
        }
    }

    /// Checks the structural rules that do not depend on the page: a non-empty
    /// range that fits the largest page, a mask of the right shape, a payload of
    /// the right length, a sparse payload only with a mask, valid metadata.
    pub fn validate_shape(&self) -> Result<()> {
        if self.page.0 == 0 {
            return Err(Error::invalid("delta names page 0, which is reserved"));
        }
        if self.len == 0 {
            return Err(Error::invalid(format!(
                "delta on {} has an empty range",
                self.page
            )));
        }
        if self.len > MAX_PAGE_SIZE {
            return Err(Error::invalid(format!(
                "delta range of {} bytes exceeds the largest page ({MAX_PAGE_SIZE})",
                self.len
            )));
        }
        if let Some(m) = &self.mask {
            mask::validate(m, self.len)?;
        }
        match (&self.payload, &self.mask) {
            (Payload::Dense(b), _) if b.len() as u64 != self.len => {
                return Err(Error::invalid(format!(
                    "dense payload has {} bytes, the range has {}",
                    b.len(),
                    self.len
                )))
            }
            (Payload::Sparse(_), None) => {
                return Err(Error::invalid("a sparse payload needs a mask"));
            }
            (Payload::Sparse(b), Some(m)) if b.len() as u64 != mask::count_ones(m) => {
                return Err(Error::invalid(format!(
                    "sparse payload has {} bytes, the mask selects {}",
                    b.len(),
                    mask::count_ones(m)
                )))
            }
            _ => {}
        }
        crate::numeric_delta::validate_accumulator(self)?;
        if self.source.len() > MAX_SOURCE_LEN {
            return Err(Error::invalid(format!(
                "source label of {} bytes exceeds {MAX_SOURCE_LEN}",
                self.source.len()
            )));
        }
        if let Some(i) = &self.intent {
            check_intent(i)?;
        }
        Ok(())
    }

    /// [`Delta::validate_shape`], plus: the range lies inside a page of `page_size` bytes.
    pub fn validate(&self, page_size: u64) -> Result<()> {
        self.validate_shape()?;
        match self.offset.checked_add(self.len) {
            Some(end) if end <= page_size => Ok(()),
            _ => Err(Error::invalid(format!(
                "delta range {}..{}+{} lies outside {} ({page_size} bytes)",
                self.offset, self.offset, self.len, self.page
            ))),
        }
    }
}

fn check_intent(json: &str) -> Result<()> {
    if json.len() > MAX_INTENT_LEN {
        return Err(Error::invalid(format!(
            "intent of {} bytes exceeds {MAX_INTENT_LEN}",
            json.len()
        )));
    }
    // `IgnoredAny` checks the syntax without building a tree (this runs on
    // every delta that carries an intent, derived deltas included).
    serde_json::from_str::<serde::de::IgnoredAny>(json)
        .map(|_| ())
        .map_err(|e| Error::invalid(format!("intent is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn well_formed_deltas_validate() {
        Delta::dense(PageId(1), 0, vec![1, 2, 3])
            .validate(3)
            .unwrap();
        Delta::masked(PageId(1), 1, vec![1, 2, 3], vec![0b101])
            .validate(4)
            .unwrap();
        Delta::sparse(PageId(1), 0, 70, vec![1, 1 << 5], vec![7, 8])
            .validate(70)
            .unwrap();
    }

    #[test]
    fn each_kind_of_bad_delta_is_invalid_argument() {
        let bad = [
            Delta::dense(PageId(1), 0, vec![]),
            Delta::dense(PageId(0), 0, vec![1]),
            Delta::dense(PageId(1), 2, vec![1, 2, 3]),
            Delta::dense(PageId(1), u64::MAX, vec![1]),
            Delta::masked(PageId(1), 0, vec![1, 2, 3], vec![0b1000]),
            Delta::masked(PageId(1), 0, vec![1, 2, 3], vec![0, 0]),
            Delta::sparse(PageId(1), 0, 3, vec![0b11], vec![1]),
            Delta {
                mask: None,
                ..Delta::sparse(PageId(1), 0, 3, vec![0b1], vec![1])
            },
            Delta {
                intent: Some("{not json".into()),
                ..Delta::dense(PageId(1), 0, vec![1])
            },
        ];
        for d in bad {
            let e = d.validate(4).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{d:?}");
        }
    }

    #[test]
    fn intent_must_be_json() {
        assert!(Delta::dense(PageId(1), 0, vec![1])
            .with_intent(r#"{"why":"tick"}"#)
            .is_ok());
        assert!(Delta::dense(PageId(1), 0, vec![1])
            .with_intent("nope")
            .is_err());
    }
}

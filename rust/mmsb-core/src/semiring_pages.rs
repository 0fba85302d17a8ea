//! Semiring networks over page bytes: where a wave meets the page store.
//!
//! A node of a [`SemiringNetwork`] is a numeric page: its value is laid out as
//! little-endian elements from byte 0 (the [`NumericView`] layout, dtype
//! [`Element::DTYPE`], length the node's length), and its optional input `b_v`
//! lives in a page of the same layout. This module converts in both
//! directions, so an engine can drive the network from commits:
//!
//! 1. a commit writes an input page: decode the page's bytes before and after,
//!    and [`SemiringNetwork::input_changes`] lists the entries that moved;
//! 2. [`SemiringNetwork::update`] runs the incremental wave;
//! 3. [`SemiringNetwork::deltas`] turns the wave's report into one overwrite
//!    delta per changed node page (masked to the changed elements), which the
//!    engine applies — and logs — in the same commit as the input write.
//!
//! [`SemiringNetwork::value_delta`] writes a node's whole value (after a full
//! wave, or to initialise a page).

use crate::delta::Delta;
use crate::dtype::{Element, NumericView};
use crate::error::{Error, Result};
use crate::mask;
use crate::page_id::PageId;
use crate::semiring::Semiring;
use crate::semiring_network::{SemiringNetwork, WaveReport};
use crate::semiring_wave::Change;

impl<S: Semiring> SemiringNetwork<S>
where
    S::Elem: Element,
{
    /// The numeric view a page holding `page`'s value (or input) has.
    pub fn view_of(&self, page: PageId) -> Result<NumericView> {
        Ok(NumericView {
            dtype: <S::Elem as Element>::DTYPE,
            len: self.len_of(page)? as u64,
        })
    }

    /// A dense delta writing `page`'s whole value to its page.
    pub fn value_delta(&self, page: PageId) -> Result<Delta> {
        Ok(Delta::dense(
            page,
            0,
            crate::dtype::encode(self.value(page)?),
        ))
    }

    /// One overwrite delta per node with changed entries in `report`: the span
    /// from the first to the last changed element, masked to the changed
    /// elements' bytes (dense when every element of the span changed).
    pub fn deltas(&self, report: &WaveReport) -> Result<Vec<Delta>> {
        let size = std::mem::size_of::<S::Elem>();
        let mut out = Vec::with_capacity(report.changed.len());
        for (&page, entries) in &report.changed {
            let (Some(&first), Some(&last)) = (entries.first(), entries.last()) else {
                continue;
            };
            let value = self.value(page)?;
            let span = value.get(first..=last).ok_or_else(|| {
                Error::invalid(format!("changed entries {first}..={last} outside {page}"))
            })?;
            let bytes = crate::dtype::encode(span);
            let offset = (first * size) as u64;
            if entries.len() == last - first + 1 {
                out.push(Delta::dense(page, offset, bytes));
                continue;
            }
            let mut words = vec![0u64; mask::words_for(bytes.len() as u64) as usize];
            for &i in entries {
                for b in 0..size {
                    mask::set_bit(&mut words, (i - first) * size + b);
                }
            }
            out.push(Delta::masked(page, offset, bytes, words));
        }
        Ok(out)
    }

    /// The input changes that turn the input page bytes `old` into `new` for
    /// node `page` (both `len × size` bytes; entries whose bytes are equal are
    /// skipped).
    pub fn input_changes(
        &self,
        page: PageId,
        old: &[u8],
        new: &[u8],
    ) -> Result<Vec<Change<S::Elem>>> {
        let size = std::mem::size_of::<S::Elem>();
        let want = self.len_of(page)? * size;
        if old.len() != want || new.len() != want {
            return Err(Error::invalid(format!(
                "the input page of {page} must have {want} bytes, not {} and {}",
                old.len(),
                new.len()
            )));
        }
        Ok(old
            .chunks_exact(size)
            .zip(new.chunks_exact(size))
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(index, (_, b))| Change::Input {
                page,
                index,
                value: <S::Elem as Element>::read_le(b),
            })
            .collect())
    }
}

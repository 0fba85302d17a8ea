//! Compressed sparse row matrices, the weight format of semiring SpMV.
//!
//! Row `r` holds the entries `row_ptr[r]..row_ptr[r + 1]` of `cols` (column
//! indices) and `vals` (values). Indices are `u32` (as cuSPARSE's 32-bit CSR),
//! so a matrix holds fewer than 2^32 nonzeros.

use mmsb_core::error::{Error, Result};

/// A CSR matrix with `nrows` rows and `ncols` columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Csr<T> {
    /// Number of rows.
    pub nrows: usize,
    /// Number of columns.
    pub ncols: usize,
    /// `nrows + 1` offsets into `cols` / `vals`, non-decreasing, from 0 to nnz.
    pub row_ptr: Vec<u32>,
    /// Column index of each entry.
    pub cols: Vec<u32>,
    /// Value of each entry.
    pub vals: Vec<T>,
}

impl<T: Copy> Csr<T> {
    /// The same matrix as mmsb-core's CSR (the semiring layer's weight
    /// format); an error if it has 2^32 or more entries.
    pub fn from_core(a: &mmsb_core::Csr<T>) -> Result<Csr<T>> {
        let row_ptr = a
            .indptr()
            .iter()
            .map(|&p| u32::try_from(p))
            .collect::<std::result::Result<Vec<u32>, _>>()
            .map_err(|_| Error::invalid("CSR: 2^32 or more entries"))?;
        Ok(Csr {
            nrows: a.nrows(),
            ncols: a.ncols(),
            row_ptr,
            cols: a.indices().to_vec(),
            vals: a.values().to_vec(),
        })
    }
}

impl<T> Csr<T> {
    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.vals.len()
    }

    /// Checks the structure: offsets, lengths and column bounds.
    pub fn validate(&self) -> Result<()> {
        if self.row_ptr.len() != self.nrows + 1 {
            return Err(Error::invalid(format!(
                "CSR: row_ptr has {} entries, {} rows need {}",
                self.row_ptr.len(),
                self.nrows,
                self.nrows + 1
            )));
        }
        if self.cols.len() != self.vals.len() {
            return Err(Error::invalid("CSR: cols and vals differ in length"));
        }
        if self.row_ptr.first() != Some(&0)
            || self.row_ptr.last().map(|&n| n as usize) != Some(self.vals.len())
            || self.row_ptr.windows(2).any(|w| w[0] > w[1])
        {
            return Err(Error::invalid(
                "CSR: row_ptr must rise from 0 to the number of entries",
            ));
        }
        if let Some(&c) = self.cols.iter().find(|&&c| c as usize >= self.ncols) {
            return Err(Error::invalid(format!(
                "CSR: column {c} outside {} columns",
                self.ncols
            )));
        }
        Ok(())
    }

    /// [`Csr::validate`], plus vector lengths that fit `y = A x`.
    pub fn check_spmv(&self, x: usize, y: usize) -> Result<()> {
        self.validate()?;
        if x != self.ncols || y != self.nrows {
            return Err(Error::invalid(format!(
                "SpMV: a {}x{} matrix needs x of {} and y of {}, got {x} and {y}",
                self.nrows, self.ncols, self.ncols, self.nrows
            )));
        }
        Ok(())
    }
}

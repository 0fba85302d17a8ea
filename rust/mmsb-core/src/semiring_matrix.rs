//! Weights of semiring edges: a scalar, a diagonal, or a sparse matrix (CSR),
//! and the matrix-vector kernels that apply them.
//!
//! A semiring edge `u -> v` carries a weight `W` that maps the parent's vector
//! `x_u` (length `n_u`) to a contribution of the child's length `n_v`:
//!
//! * [`Weight::Scalar`] `w`: `(W ⊗ x)[i] = w ⊗ x[i]` (`n_u = n_v`);
//! * [`Weight::Diagonal`] `d`: `(W ⊗ x)[i] = d[i] ⊗ x[i]` (`n_u = n_v`);
//! * [`Weight::Matrix`] `A` (`n_v` rows, `n_u` columns):
//!   `(W ⊗ x)[i] = ⊕_j A[i, j] ⊗ x[j]` over the stored entries of row `i`: the
//!   GraphBLAS `mxv` on the semiring. An entry not stored is the semiring's
//!   zero, which annihilates, so it contributes nothing.
//!
//! [`Csr`] stores a matrix row by row (compressed sparse rows): `indptr` of
//! `nrows + 1` offsets, and for the entries of row `i`, `indptr[i] ..
//! indptr[i + 1]`, their column (`u32`, strictly increasing within a row, so a
//! lookup is a binary search) and value. Column indices are 32-bit: half the
//! index bandwidth of 64-bit indices, for matrices of up to `u32::MAX` columns.
//!
//! The kernels: [`mxv_into`] (`y = A ⊗ x`, or `y ⊕= A ⊗ x`) runs rows on the
//! current rayon pool in chunks of about equal numbers of entries, each row
//! with four independent accumulators (a float sum is then associated
//! differently from a left-to-right loop: within the rounding the semiring's
//! [`Properties::exact`](crate::semiring::Properties::exact) already allows);
//! [`mxv_reference`] is the plain sequential loop the tests compare against;
//! [`row_dot`] folds one row, stopping early at the semiring's terminal value
//! (what an incremental wave uses to recompute one entry).

use crate::error::{Error, Result};
use crate::semiring::Semiring;
use rayon::prelude::*;

/// A sparse matrix in compressed-sparse-row form. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Csr<T> {
    nrows: usize,
    ncols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<T>,
}

impl<T: Copy> Csr<T> {
    /// A matrix from its parts, checked: `indptr` has `nrows + 1`
    /// non-decreasing offsets from 0 to `indices.len()`, `indices` and `values`
    /// have the same length, and the columns of each row are strictly
    /// increasing and below `ncols`.
    pub fn from_parts(
        nrows: usize,
        ncols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        values: Vec<T>,
    ) -> Result<Csr<T>> {
        if ncols > u32::MAX as usize {
            return Err(Error::invalid(format!(
                "a matrix has at most {} columns, not {ncols}",
                u32::MAX
            )));
        }
        if indptr.len() != nrows + 1 || indptr.first() != Some(&0) {
            return Err(Error::invalid(format!(
                "indptr of a {nrows}-row matrix must have {} offsets starting at 0",
                nrows + 1
            )));
        }
        if indices.len() != values.len() || indptr.last() != Some(&indices.len()) {
            return Err(Error::invalid(format!(
                "indptr ends at {:?} but there are {} column indices and {} values",
                indptr.last(),
                indices.len(),
                values.len()
            )));
        }
        for i in 0..nrows {
            let (a, b) = (indptr[i], indptr[i + 1]);
            if a > b {
                return Err(Error::invalid(format!("indptr decreases at row {i}")));
            }
            let row = &indices[a..b];
            if row.iter().any(|&c| c as usize >= ncols) {
                return Err(Error::invalid(format!(
                    "row {i} has a column outside 0..{ncols}"
                )));
            }
            if row.windows(2).any(|w| w[0] >= w[1]) {
                return Err(Error::invalid(format!(
                    "the columns of row {i} are not strictly increasing"
                )));
            }
        }
        Ok(Csr {
            nrows,
            ncols,
            indptr,
            indices,
            values,
        })
    }

    /// A matrix from `(row, column, value)` triplets in any order; duplicates
    /// of one position are combined with the semiring's `⊕`.
    pub fn from_triplets<S: Semiring<Elem = T>>(
        s: &S,
        nrows: usize,
        ncols: usize,
        triplets: &[(usize, usize, T)],
    ) -> Result<Csr<T>> {
        if ncols > u32::MAX as usize {
            return Err(Error::invalid(format!(
                "a matrix has at most {} columns, not {ncols}",
                u32::MAX
            )));
        }
        let mut t: Vec<(usize, usize, T)> = Vec::with_capacity(triplets.len());
        for &(i, j, v) in triplets {
            if i >= nrows || j >= ncols {
                return Err(Error::invalid(format!(
                    "entry ({i}, {j}) is outside a {nrows} x {ncols} matrix"
                )));
            }
            t.push((i, j, v));
        }
        t.sort_by_key(|&(i, j, _)| (i, j));
        let mut indptr = vec![0usize; nrows + 1];
        let mut indices: Vec<u32> = Vec::with_capacity(t.len());
        let mut values: Vec<T> = Vec::with_capacity(t.len());
        let mut last: Option<(usize, usize)> = None;
        for (i, j, v) in t {
            if last == Some((i, j)) {
                if let Some(x) = values.last_mut() {
                    *x = s.add(*x, v);
                }
                continue;
            }
            last = Some((i, j));
            indptr[i + 1] += 1;
            indices.push(j as u32);
            values.push(v);
        }
        for i in 0..nrows {
            indptr[i + 1] += indptr[i];
        }
        Csr::from_parts(nrows, ncols, indptr, indices, values)
    }

    /// Rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// Columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// The row offsets (`nrows + 1`).
    pub fn indptr(&self) -> &[usize] {
        &self.indptr
    }

    /// The column of each stored entry.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// The value of each stored entry.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// The columns and values of row `i` (empty past the last row).
    pub fn row(&self, i: usize) -> (&[u32], &[T]) {
        if i >= self.nrows {
            return (&[], &[]);
        }
        let r = self.indptr[i]..self.indptr[i + 1];
        (&self.indices[r.clone()], &self.values[r])
    }

    /// Where entry `(i, j)` is stored, if it is.
    pub fn position(&self, i: usize, j: usize) -> Option<usize> {
        if i >= self.nrows {
            return None;
        }
        let (a, b) = (self.indptr[i], self.indptr[i + 1]);
        let j = u32::try_from(j).ok()?;
        self.indices[a..b].binary_search(&j).ok().map(|k| a + k)
    }

    /// The stored value at `(i, j)`, if any.
    pub fn get(&self, i: usize, j: usize) -> Option<T> {
        self.position(i, j).map(|k| self.values[k])
    }

    /// Replaces the value of the stored entry `(i, j)` and returns the old one;
    /// `NotFound` if `(i, j)` is not stored (the sparsity pattern is fixed).
    pub fn set(&mut self, i: usize, j: usize, value: T) -> Result<T> {
        let k = self
            .position(i, j)
            .ok_or_else(|| Error::not_found(format!("matrix entry ({i}, {j}) is not stored")))?;
        Ok(std::mem::replace(&mut self.values[k], value))
    }

    /// The transpose (which is also this matrix in compressed-sparse-column form).
    pub fn transpose(&self) -> Csr<T> {
        let mut indptr = vec![0usize; self.ncols + 1];
        for &c in &self.indices {
            indptr[c as usize + 1] += 1;
        }
        for j in 0..self.ncols {
            indptr[j + 1] += indptr[j];
        }
        let mut next = indptr.clone();
        let mut indices = vec![0u32; self.nnz()];
        let mut values: Vec<T> = self.values.clone();
        for i in 0..self.nrows {
            for k in self.indptr[i]..self.indptr[i + 1] {
                let c = self.indices[k] as usize;
                let dst = next[c];
                next[c] += 1;
                indices[dst] = i as u32;
                values[dst] = self.values[k];
            }
        }
        // Rows are visited in increasing order, so each column's rows increase.
        Csr {
            nrows: self.ncols,
            ncols: self.nrows,
            indptr,
            indices,
            values,
        }
    }
}

/// The weight of a semiring edge. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub enum Weight<T> {
    /// `w ⊗ x[i]` for every entry.
    Scalar(T),
    /// `d[i] ⊗ x[i]`.
    Diagonal(Vec<T>),
    /// `⊕_j A[i, j] ⊗ x[j]` (rows = child entries, columns = parent entries).
    Matrix(Csr<T>),
}

impl<T: Copy> Weight<T> {
    /// Checks that the weight maps a parent of `n_parent` entries to a child of
    /// `n_child` entries.
    pub fn check_shape(&self, n_parent: usize, n_child: usize) -> Result<()> {
        let ok = match self {
            Weight::Scalar(_) => n_parent == n_child,
            Weight::Diagonal(d) => n_parent == n_child && d.len() == n_child,
            Weight::Matrix(a) => a.nrows() == n_child && a.ncols() == n_parent,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "a {} weight does not map {n_parent} parent entries to {n_child} child entries",
                self.kind_name()
            )))
        }
    }

    /// `"scalar"`, `"diagonal"` or `"matrix"`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Weight::Scalar(_) => "scalar",
            Weight::Diagonal(_) => "diagonal",
            Weight::Matrix(_) => "matrix",
        }
    }
}

/// `y = A ⊗ x` (or `y ⊕= A ⊗ x` when `accumulate`), the plain sequential loop.
pub fn mxv_reference<S: Semiring>(
    s: &S,
    a: &Csr<S::Elem>,
    x: &[S::Elem],
    y: &mut [S::Elem],
    accumulate: bool,
) -> Result<()> {
    check_mxv(a, x, y)?;
    for (i, yi) in y.iter_mut().enumerate() {
        let mut acc = if accumulate { *yi } else { s.zero() };
        let (cols, vals) = a.row(i);
        for (&c, &w) in cols.iter().zip(vals) {
            acc = s.add(acc, s.mul(w, x[c as usize]));
        }
        *yi = acc;
    }
    Ok(())
}

fn check_mxv<T: Copy>(a: &Csr<T>, x: &[T], y: &[T]) -> Result<()> {
    if x.len() != a.ncols() || y.len() != a.nrows() {
        return Err(Error::invalid(format!(
            "mxv of a {} x {} matrix needs x of {} and y of {} entries, not {} and {}",
            a.nrows(),
            a.ncols(),
            a.ncols(),
            a.nrows(),
            x.len(),
            y.len()
        )));
    }
    Ok(())
}

/// Row `i` folded: `⊕_j A[i, j] ⊗ x[j]`, starting from `init`, stopping as
/// soon as the fold reaches the semiring's terminal value.
#[inline]
pub fn row_dot<S: Semiring>(
    s: &S,
    a: &Csr<S::Elem>,
    i: usize,
    x: &[S::Elem],
    init: S::Elem,
) -> S::Elem {
    let mut acc = init;
    let (cols, vals) = a.row(i);
    for (&c, &w) in cols.iter().zip(vals) {
        if s.is_terminal(acc) {
            break;
        }
        if let Some(&xv) = x.get(c as usize) {
            acc = s.add(acc, s.mul(w, xv));
        }
    }
    acc
}

/// Stored entries `lo..hi` of a row folded with four independent accumulators.
///
/// # Safety
///
/// `lo <= hi <= indices.len() == values.len()`, and every `indices[k]` for `k`
/// in `lo..hi` is below `x.len()`.
#[inline(always)]
unsafe fn row_fold4_unchecked<S: Semiring>(
    s: &S,
    indices: &[u32],
    values: &[S::Elem],
    lo: usize,
    hi: usize,
    x: &[S::Elem],
) -> S::Elem {
    let term = |k: usize| {
        // SAFETY: callers pass k in lo..hi, so k < hi <= indices.len() =
        // values.len(), and indices[k] < x.len(), by this function's contract.
        unsafe {
            s.mul(
                *values.get_unchecked(k),
                *x.get_unchecked(*indices.get_unchecked(k) as usize),
            )
        }
    };
    let z = s.zero();
    let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
    let mut k = lo;
    while k + 4 <= hi {
        a0 = s.add(a0, term(k));
        a1 = s.add(a1, term(k + 1));
        a2 = s.add(a2, term(k + 2));
        a3 = s.add(a3, term(k + 3));
        k += 4;
    }
    if k + 2 <= hi {
        a0 = s.add(a0, term(k));
        a1 = s.add(a1, term(k + 1));
        k += 2;
    }
    if k < hi {
        a2 = s.add(a2, term(k));
    }
    s.add(s.add(a0, a1), s.add(a2, a3))
}

/// Stored entries `lo..hi` of a row folded left to right (one accumulator).
///
/// # Safety
///
/// As [`row_fold4_unchecked`].
#[inline(always)]
unsafe fn row_fold1_unchecked<S: Semiring>(
    s: &S,
    indices: &[u32],
    values: &[S::Elem],
    lo: usize,
    hi: usize,
    x: &[S::Elem],
) -> S::Elem {
    let mut acc = s.zero();
    for k in lo..hi {
        // SAFETY: k < hi <= indices.len() = values.len(), and indices[k] <
        // x.len(), by this function's contract.
        let t = unsafe {
            s.mul(
                *values.get_unchecked(k),
                *x.get_unchecked(*indices.get_unchecked(k) as usize),
            )
        };
        acc = s.add(acc, t);
    }
    acc
}

/// Folds each row `first_row + k` of `A ⊗ x` for `k` in `0..y.len()` and hands
/// `f` the row's position `k`, its entry of `y` and the folded value. The one
/// row kernel of [`mxv_rows`] and [`mxv_rows_update`]; the caller has checked
/// the shapes (`check_mxv`).
#[inline(always)]
fn fold_rows<S: Semiring>(
    s: &S,
    a: &Csr<S::Elem>,
    x: &[S::Elem],
    y: &mut [S::Elem],
    first_row: usize,
    mut f: impl FnMut(usize, &mut S::Elem, S::Elem),
) {
    let Some(ptr) = a.indptr.get(first_row..=first_row + y.len()) else {
        return;
    };
    // Four lanes reorder ⊕; a semiring that does not declare ⊕ commutative
    // folds each row strictly left to right.
    let lanes = s.properties().commutative_add;
    debug_assert_eq!(x.len(), a.ncols);
    for (k, (yi, w)) in y.iter_mut().zip(ptr.windows(2)).enumerate() {
        let (lo, hi) = (w[0], w[1]);
        // SAFETY: a `Csr` is only built by `from_parts` (or `transpose` of a
        // checked matrix), which guarantees non-decreasing `indptr` ending at
        // `indices.len() == values.len()` and every column below `ncols`;
        // `check_mxv` guaranteed `x.len() == ncols`. Exercised by
        // `parallel_mxv_equals_the_reference_and_checks_shapes`,
        // `mxv_update_writes_the_product_and_reports_exactly_the_rows_that_moved`
        // and the mxv property tests.
        let t = unsafe {
            if lanes {
                row_fold4_unchecked(s, &a.indices, &a.values, lo, hi, x)
            } else {
                row_fold1_unchecked(s, &a.indices, &a.values, lo, hi, x)
            }
        };
        f(k, yi, t);
    }
}

/// Rows `first_row ..` of `y = A ⊗ x` (or `⊕=`), written to `y` (which holds
/// exactly those rows). The caller has checked the shapes (`check_mxv`).
fn mxv_rows<S: Semiring>(
    s: &S,
    a: &Csr<S::Elem>,
    x: &[S::Elem],
    y: &mut [S::Elem],
    first_row: usize,
    accumulate: bool,
) {
    fold_rows(s, a, x, y, first_row, |_, yi, t| {
        *yi = if accumulate { s.add(*yi, t) } else { t };
    });
}

/// Entries per parallel task of [`mxv_into`]: large enough that scheduling is
/// noise, small enough to balance two to a few dozen threads.
const MXV_TASK_NNZ: usize = 16 * 1024;

/// `y = A ⊗ x`, or `y ⊕= A ⊗ x` when `accumulate`, on the current rayon pool:
/// rows are cut into tasks of about 16K stored entries each (`MXV_TASK_NNZ`).
/// Equals [`mxv_reference`] exactly for exact semirings, and within rounding
/// for float sums (see the module docs).
pub fn mxv_into<S: Semiring>(
    s: &S,
    a: &Csr<S::Elem>,
    x: &[S::Elem],
    y: &mut [S::Elem],
    accumulate: bool,
) -> Result<()> {
    check_mxv(a, x, y)?;
    if a.nnz() <= MXV_TASK_NNZ || rayon::current_num_threads() == 1 {
        mxv_rows(s, a, x, y, 0, accumulate);
        return Ok(());
    }
    let chunks = row_chunks(a, y);
    chunks
        .into_par_iter()
        .for_each(|(first, ys)| mxv_rows(s, a, x, ys, first, accumulate));
    Ok(())
}

/// `y := A ⊗ x` in place, returning the rows whose value changed (in
/// increasing order): one pass that both computes and compares, for a full
/// wave that must report what it changed. Runs like [`mxv_into`].
pub fn mxv_update<S: Semiring>(
    s: &S,
    a: &Csr<S::Elem>,
    x: &[S::Elem],
    y: &mut [S::Elem],
) -> Result<Vec<usize>> {
    check_mxv(a, x, y)?;
    if a.nnz() <= MXV_TASK_NNZ || rayon::current_num_threads() == 1 {
        let mut changed = Vec::new();
        mxv_rows_update(s, a, x, y, 0, &mut changed);
        return Ok(changed);
    }
    let chunks = row_chunks(a, y);
    let parts: Vec<Vec<usize>> = chunks
        .into_par_iter()
        .map(|(first, ys)| {
            let mut changed = Vec::new();
            mxv_rows_update(s, a, x, ys, first, &mut changed);
            changed
        })
        .collect();
    Ok(parts.concat())
}

/// Rows `first_row ..` of `y := A ⊗ x`, fused with the comparison: each
/// row's new value is folded in registers, compared with the old one, and
/// stored (and its row pushed to `changed`) only when it differs — one pass
/// over `y` and no scratch vector. The caller has checked the shapes.
fn mxv_rows_update<S: Semiring>(
    s: &S,
    a: &Csr<S::Elem>,
    x: &[S::Elem],
    y: &mut [S::Elem],
    first_row: usize,
    changed: &mut Vec<usize>,
) {
    fold_rows(s, a, x, y, first_row, |k, yi, t| {
        if *yi != t {
            *yi = t;
            changed.push(first_row + k);
        }
    });
}

/// Splits `y` into tasks of about [`MXV_TASK_NNZ`] stored entries of `a`.
///
/// The cut after the `k`-th task is the first row boundary at or past
/// `k × MXV_TASK_NNZ` entries, found by binary search in `indptr`: the split
/// costs `O(tasks · log nrows)` per call, not a serial pass over every row
/// (which, at 100k rows, was a tenth of a 2-thread mxv of 1M entries).
fn row_chunks<'y, T: Copy, E>(a: &Csr<T>, y: &'y mut [E]) -> Vec<(usize, &'y mut [E])> {
    let tasks = a.nnz().div_ceil(MXV_TASK_NNZ).max(1);
    let mut bounds = Vec::with_capacity(tasks + 1);
    bounds.push(0usize);
    for k in 1..tasks {
        let target = k * MXV_TASK_NNZ;
        let row = a.indptr.partition_point(|&p| p < target).min(a.nrows());
        if bounds.last().is_some_and(|&b| row > b) {
            bounds.push(row);
        }
    }
    if bounds.last() != Some(&a.nrows()) {
        bounds.push(a.nrows());
    }
    let mut chunks = Vec::with_capacity(bounds.len());
    let mut rest = y;
    for w in bounds.windows(2) {
        let (head, tail) = rest.split_at_mut(w[1] - w[0]);
        chunks.push((w[0], head));
        rest = tail;
    }
    chunks
}

/// `y ⊕= W ⊗ x` for any [`Weight`] (the shapes must agree), or `y = W ⊗ x`
/// when `accumulate` is false.
pub fn apply_weight<S: Semiring>(
    s: &S,
    w: &Weight<S::Elem>,
    x: &[S::Elem],
    y: &mut [S::Elem],
    accumulate: bool,
) -> Result<()> {
    w.check_shape(x.len(), y.len())?;
    let acc = |yi: &mut S::Elem, t: S::Elem| *yi = if accumulate { s.add(*yi, t) } else { t };
    match w {
        Weight::Scalar(c) => {
            for (yi, &xi) in y.iter_mut().zip(x) {
                acc(yi, s.mul(*c, xi));
            }
        }
        Weight::Diagonal(d) => {
            for ((yi, &xi), &di) in y.iter_mut().zip(x).zip(d) {
                acc(yi, s.mul(di, xi));
            }
        }
        Weight::Matrix(a) => mxv_into(s, a, x, y, accumulate)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semiring::{MinPlus, PlusTimes};

    #[test]
    fn triplets_sort_combine_duplicates_and_transpose_round_trips() {
        let s = PlusTimes::<i64>::new();
        let a =
            Csr::from_triplets(&s, 3, 4, &[(2, 1, 5), (0, 3, 1), (2, 1, 2), (0, 0, 7)]).unwrap();
        assert_eq!(a.indptr(), &[0, 2, 2, 3]);
        assert_eq!(a.indices(), &[0, 3, 1]);
        assert_eq!(a.values(), &[7, 1, 7]);
        assert_eq!(a.get(2, 1), Some(7));
        assert_eq!(a.get(1, 1), None);
        let t = a.transpose();
        assert_eq!((t.nrows(), t.ncols()), (4, 3));
        assert_eq!(t.get(1, 2), Some(7));
        assert_eq!(t.transpose(), a);
        assert!(Csr::from_triplets(&s, 3, 4, &[(3, 0, 1)]).is_err());
    }

    #[test]
    fn malformed_parts_are_rejected() {
        assert!(Csr::<f64>::from_parts(2, 2, vec![0, 1], vec![0], vec![1.0]).is_err());
        assert!(Csr::<f64>::from_parts(1, 2, vec![0, 2], vec![1, 0], vec![1.0, 2.0]).is_err());
        assert!(Csr::<f64>::from_parts(1, 2, vec![0, 1], vec![2], vec![1.0]).is_err());
        assert!(Csr::<f64>::from_parts(1, 2, vec![0, 1], vec![1], vec![]).is_err());
        let mut ok = Csr::<f64>::from_parts(1, 2, vec![0, 1], vec![1], vec![3.0]).unwrap();
        assert_eq!(ok.set(0, 1, 4.0).unwrap(), 3.0);
        assert!(ok.set(0, 0, 1.0).is_err());
    }

    /// Plus-times over i64 that does not declare `⊕` commutative: the kernel
    /// must fold rows left to right (one accumulator).
    #[derive(Clone, Default)]
    struct Sequential;
    impl Semiring for Sequential {
        type Elem = i64;
        fn zero(&self) -> i64 {
            0
        }
        fn one(&self) -> i64 {
            1
        }
        fn add(&self, a: i64, b: i64) -> i64 {
            a.wrapping_add(b)
        }
        fn mul(&self, a: i64, b: i64) -> i64 {
            a.wrapping_mul(b)
        }
        fn properties(&self) -> crate::semiring::Properties {
            crate::semiring::Properties {
                commutative_add: false,
                ..PlusTimes::<i64>::new().properties()
            }
        }
    }

    #[test]
    fn a_semiring_without_commutative_add_folds_rows_in_order() {
        let s = Sequential;
        let t: Vec<(usize, usize, i64)> = (0..50)
            .flat_map(|i| (0..(i % 13)).map(move |k| (i, (i + 3 * k) % 40, (i * k) as i64 - 7)))
            .collect();
        let a = Csr::from_triplets(&s, 50, 40, &t).unwrap();
        let x: Vec<i64> = (0..40).map(|v| v * 3 - 11).collect();
        let (mut y1, mut y2) = (vec![2i64; 50], vec![2i64; 50]);
        mxv_into(&s, &a, &x, &mut y1, true).unwrap();
        mxv_reference(&s, &a, &x, &mut y2, true).unwrap();
        assert_eq!(y1, y2);
    }

    #[test]
    fn mxv_update_writes_the_product_and_reports_exactly_the_rows_that_moved() {
        let s = PlusTimes::<i64>::new();
        let n = 5000;
        let t: Vec<(usize, usize, i64)> = (0..n)
            .flat_map(|i| (0..(i % 9)).map(move |k| (i, (i * 5 + k * 11) % n, (k as i64) - 3)))
            .collect();
        let a = Csr::from_triplets(&s, n, n, &t).unwrap();
        assert!(a.nnz() > MXV_TASK_NNZ);
        let x: Vec<i64> = (0..n as i64).map(|v| v % 7 - 3).collect();
        let mut want = vec![0i64; n];
        mxv_reference(&s, &a, &x, &mut want, false).unwrap();
        // Start from the answer with every 3rd row disturbed.
        let mut y = want.clone();
        for i in (0..n).step_by(3) {
            y[i] += 1;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let changed = pool.install(|| mxv_update(&s, &a, &x, &mut y)).unwrap();
        assert_eq!(y, want);
        assert_eq!(changed, (0..n).step_by(3).collect::<Vec<_>>());
        assert!(mxv_update(&s, &a, &x, &mut y).unwrap().is_empty());
    }

    #[test]
    fn parallel_mxv_equals_the_reference_and_checks_shapes() {
        let s = MinPlus::<i64>::new();
        let n = 300;
        let mut t = Vec::new();
        for i in 0..n {
            for k in 0..(i % 200) {
                t.push((i, (i * 7 + k * 13) % n, ((i + k) % 17) as i64));
            }
        }
        let a = Csr::from_triplets(&s, n, n, &t).unwrap();
        assert!(a.nnz() > MXV_TASK_NNZ);
        let x: Vec<i64> = (0..n as i64).map(|v| (v * 31) % 101).collect();
        let mut y1 = vec![5i64; n];
        let mut y2 = y1.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| mxv_into(&s, &a, &x, &mut y1, true))
            .unwrap();
        mxv_reference(&s, &a, &x, &mut y2, true).unwrap();
        assert_eq!(y1, y2);
        assert!(mxv_into(&s, &a, &x[1..], &mut y1, false).is_err());
        assert_eq!(row_dot(&s, &a, 5, &x, s.zero()), {
            let mut one = vec![0i64; n];
            mxv_reference(&s, &a, &x, &mut one, false).unwrap();
            one[5]
        });
    }

    #[test]
    fn row_chunks_cover_every_row_once_and_balance_entries() {
        // Empty rows, one row far longer than a task, then many short rows.
        let n = 5000;
        let mut indptr = vec![0usize];
        let mut nnz = 0;
        for i in 0..n {
            nnz += match i {
                0..=9 => 0,
                10 => 3 * MXV_TASK_NNZ + 5,
                _ => i % 23,
            };
            indptr.push(nnz);
        }
        let a = Csr {
            nrows: n,
            ncols: 1,
            indices: vec![0; nnz],
            values: vec![0u8; nnz],
            indptr,
        };
        let mut y = vec![0u8; n];
        let chunks = row_chunks(&a, &mut y);
        let mut next = 0;
        for (first, ys) in &chunks {
            assert_eq!(*first, next, "contiguous");
            assert!(!ys.is_empty());
            next += ys.len();
            let entries = a.indptr[first + ys.len()] - a.indptr[*first];
            // A task holds at most one task's worth plus its last row.
            let last_row = a.indptr[first + ys.len()] - a.indptr[first + ys.len() - 1];
            assert!(entries <= MXV_TASK_NNZ + last_row, "{entries} entries");
        }
        assert_eq!(next, n);
        assert!(chunks.len() >= a.nnz() / MXV_TASK_NNZ - 3);
    }
}

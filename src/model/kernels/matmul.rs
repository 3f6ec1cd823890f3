//! Strided matrix products on raw f32 buffers through the `gemm` crate, for kernels that
//! multiply many small blocks in parallel (one attention head each) or need a product
//! candle's autograd would split into several nodes.

use std::marker::PhantomData;

/// A read-only matrix view: element (i, j) at `data[offset + i·row_stride + j·col_stride]`.
/// It borrows `data` (shared) for `'a`, so no writable view of the same buffer can exist
/// beside it except through [`SharedOutput`]'s unsafe contract.
#[derive(Clone, Copy)]
pub(super) struct Matrix<'a> {
    ptr: *const f32,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
    _data: PhantomData<&'a [f32]>,
}

// SAFETY: a `Matrix` only reads through a shared borrow of its buffer, which lives for 'a:
// sending it to other threads is sending a `&[f32]`.
unsafe impl Send for Matrix<'_> {}
unsafe impl Sync for Matrix<'_> {}

fn check_bounds(len: usize, offset: usize, (rows, cols): (usize, usize), strides: (usize, usize)) {
    if rows > 0 && cols > 0 {
        let last = offset + (rows - 1) * strides.0 + (cols - 1) * strides.1;
        assert!(last < len, "matrix view out of bounds: {last} ≥ {len}");
    }
}

impl<'a> Matrix<'a> {
    /// `rows × cols` values stored row by row, `row_stride` apart, from `data[offset]`.
    pub(super) fn rows(
        data: &'a [f32],
        offset: usize,
        shape: (usize, usize),
        row_stride: usize,
    ) -> Self {
        check_bounds(data.len(), offset, shape, (row_stride, 1));
        Self {
            ptr: data.as_ptr().wrapping_add(offset),
            rows: shape.0,
            cols: shape.1,
            row_stride,
            col_stride: 1,
            _data: PhantomData,
        }
    }

    pub(super) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// A writable matrix stored row by row (`row_stride` apart, columns adjacent). Made by
/// [`MatrixMut::rows`] it borrows its buffer exclusively for `'a`; made by
/// [`SharedOutput::view`] it shares the buffer with other views of disjoint elements.
pub(super) struct MatrixMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    row_stride: usize,
    _data: PhantomData<&'a mut [f32]>,
}

impl<'a> MatrixMut<'a> {
    pub(super) fn rows(
        data: &'a mut [f32],
        offset: usize,
        shape: (usize, usize),
        row_stride: usize,
    ) -> Self {
        check_bounds(data.len(), offset, shape, (row_stride, 1));
        Self {
            ptr: data.as_mut_ptr().wrapping_add(offset),
            rows: shape.0,
            cols: shape.1,
            row_stride,
            _data: PhantomData,
        }
    }
}

/// An output buffer that parallel tasks write through disjoint [`MatrixMut`] views (the
/// columns of one attention head, say), which safe slices cannot express.
pub(super) struct SharedOutput<'a> {
    ptr: *mut f32,
    len: usize,
    _data: PhantomData<&'a mut [f32]>,
}

// SAFETY: it holds the buffer's exclusive borrow for 'a; see `view` for what the tasks that
// share it must keep to.
unsafe impl Send for SharedOutput<'_> {}
unsafe impl Sync for SharedOutput<'_> {}

impl<'a> SharedOutput<'a> {
    pub(super) fn new(data: &'a mut [f32]) -> Self {
        Self {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            _data: PhantomData,
        }
    }

    /// # Safety
    /// No two views alive at the same time share an element (the views are written from
    /// several threads at once). The buffer outlives the views by construction ('a).
    pub(super) unsafe fn view(
        &self,
        offset: usize,
        shape: (usize, usize),
        row_stride: usize,
    ) -> MatrixMut<'a> {
        check_bounds(self.len, offset, shape, (row_stride, 1));
        MatrixMut {
            ptr: self.ptr.wrapping_add(offset),
            rows: shape.0,
            cols: shape.1,
            row_stride,
            _data: PhantomData,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Threads {
    /// The calling task only: the caller runs many products in parallel.
    One,
    /// Split across rayon's pool where the product is large enough.
    All,
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`.
pub(super) fn matmul(dst: MatrixMut, lhs: Matrix, rhs: Matrix, accumulate: bool, threads: Threads) {
    assert!(
        lhs.rows == dst.rows && rhs.cols == dst.cols && lhs.cols == rhs.rows,
        "matmul shapes: ({}×{})·({}×{}) → {}×{}",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols,
        dst.rows,
        dst.cols
    );
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(0),
    };
    // SAFETY: bounds: every view was checked when it was made, and the shapes agree.
    // Aliasing: `dst` is written while `lhs` and `rhs` are read. A `MatrixMut` from
    // `MatrixMut::rows` holds its buffer's exclusive borrow, so no `Matrix` of that buffer
    // exists; one from `SharedOutput::view` comes from a buffer whose exclusive borrow the
    // `SharedOutput` holds, so again no `Matrix` reads it, and its caller promised that no
    // other live view writes the same elements. Lifetimes: every view borrows its buffer.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            lhs.cols,
            dst.ptr,
            1,
            dst.row_stride as isize,
            accumulate,
            lhs.ptr,
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.ptr,
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

//! Strided matrix products on raw f32 buffers through the `gemm` crate, for kernels that
//! multiply many small blocks in parallel (one attention head each) or need a product
//! candle's autograd would split into several nodes.

/// A read-only matrix view: element (i, j) at `data[offset + i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub(super) struct Matrix {
    ptr: *const f32,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

// SAFETY: a `Matrix` only reads, and the buffer it views outlives every task it is sent to.
unsafe impl Send for Matrix {}
unsafe impl Sync for Matrix {}

fn check_bounds(len: usize, offset: usize, (rows, cols): (usize, usize), strides: (usize, usize)) {
    if rows > 0 && cols > 0 {
        let last = offset + (rows - 1) * strides.0 + (cols - 1) * strides.1;
        assert!(last < len, "matrix view out of bounds: {last} ≥ {len}");
    }
}

impl Matrix {
    /// `rows × cols` values stored row by row, `row_stride` apart, from `data[offset]`.
    pub(super) fn rows(
        data: &[f32],
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

/// A writable matrix stored row by row (`row_stride` apart, columns adjacent).
pub(super) struct MatrixMut {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl MatrixMut {
    pub(super) fn rows(
        data: &mut [f32],
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
        }
    }
}

/// An output buffer that parallel tasks write through disjoint [`MatrixMut`] views (the
/// columns of one attention head, say), which safe slices cannot express.
pub(super) struct SharedOutput {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: see `view`: tasks write disjoint elements.
unsafe impl Send for SharedOutput {}
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    pub(super) fn new(data: &mut [f32]) -> Self {
        Self {
            ptr: data.as_mut_ptr(),
            len: data.len(),
        }
    }

    /// # Safety
    /// No two views alive at the same time share an element, and the buffer outlives them.
    pub(super) unsafe fn view(
        &self,
        offset: usize,
        shape: (usize, usize),
        row_stride: usize,
    ) -> MatrixMut {
        check_bounds(self.len, offset, shape, (row_stride, 1));
        MatrixMut {
            ptr: self.ptr.wrapping_add(offset),
            rows: shape.0,
            cols: shape.1,
            row_stride,
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
    // SAFETY: every view was bounds-checked when it was made and the shapes agree.
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

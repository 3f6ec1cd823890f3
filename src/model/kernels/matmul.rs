//! Strided matrix products on raw f32 buffers through the `gemm` crate, for kernels that
//! multiply many small blocks in parallel (one attention head each) or need a product
//! candle's autograd would split into several nodes.

use super::cpu::CpuId;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};

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
    /// As [`SharedOutput::view`]: no two slices or views alive at the same time share an
    /// element.
    pub(super) unsafe fn slice(&self, offset: usize, len: usize) -> &'a mut [f32] {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "slice out of bounds"
        );
        std::slice::from_raw_parts_mut(self.ptr.add(offset), len)
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
    // The kernel: `F32Kernel::for_product` only returns kernels this CPU runs.
    let kernel = F32Kernel::for_product(dst.rows, threads);
    unsafe { kernel.run(dst, lhs, rhs, accumulate, parallelism) }
}

/// The micro-kernels of `gemm` that the f32 products run: portable without AVX2, 256-bit
/// without AVX-512, and where both run, the one measured faster on this CPU family
/// ([`CpuId::prefers_512_bit_f32`]: the vendor alone does not tell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F32Kernel {
    Portable,
    Avx2,
    Avx512,
}

/// Output rows from which products split across threads use the 512-bit kernels.
const MIN_PARALLEL_512_ROWS: usize = 512;

static CHOSEN_F32_KERNEL: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = u8::MAX;

impl F32Kernel {
    const ALL: [F32Kernel; 3] = [F32Kernel::Portable, F32Kernel::Avx2, F32Kernel::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            F32Kernel::Portable => "portable",
            F32Kernel::Avx2 => "avx2",
            F32Kernel::Avx512 => "avx512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            F32Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            F32Kernel::Avx2 => gemm_common::simd::V3::try_new().is_some(),
            #[cfg(target_arch = "x86_64")]
            F32Kernel::Avx512 => gemm_common::simd::V4::try_new().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The kernels this CPU can run, slowest first.
    pub fn available() -> Vec<Self> {
        Self::ALL.into_iter().filter(|k| k.is_available()).collect()
    }

    /// The kernel the products use unless [`F32Kernel::set`] chose another.
    pub fn preferred() -> Self {
        if F32Kernel::Avx512.is_available() && CpuId::of_this_machine().prefers_512_bit_f32() {
            F32Kernel::Avx512
        } else if F32Kernel::Avx2.is_available() {
            F32Kernel::Avx2
        } else {
            F32Kernel::Portable
        }
    }

    /// The kernel the products use now (the preferred one, looked up once, unless
    /// [`F32Kernel::set`] chose another).
    pub fn current() -> Self {
        match CHOSEN_F32_KERNEL.load(Ordering::Relaxed) {
            UNSET => {
                let preferred = Self::preferred();
                // A concurrent `set` wins.
                match CHOSEN_F32_KERNEL.compare_exchange(
                    UNSET,
                    preferred.index(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => preferred,
                    Err(chosen) => Self::ALL[chosen as usize],
                }
            }
            i => Self::ALL[i as usize],
        }
    }

    /// The kernel for a product with `rows` output rows: split across threads, gemm's 512-bit
    /// kernels lose to its 256-bit ones below a few hundred rows (one text's layers: 40 ×
    /// 1536 × 384 at 38 against 78 GFLOP/s, 256 rows at 129 against 136; 600 × 384 × 1152 at
    /// 260 against 161), so those keep the 256-bit kernels; single-threaded products (one
    /// attention head each) gain at every size measured.
    fn for_product(rows: usize, threads: Threads) -> Self {
        match Self::current() {
            F32Kernel::Avx512 if threads == Threads::All && rows < MIN_PARALLEL_512_ROWS => {
                F32Kernel::Avx2
            }
            kernel => kernel,
        }
    }

    fn index(self) -> u8 {
        self as u8
    }

    /// Makes every later f32 product of this process use `self` (for measuring one kernel
    /// against another); `None` if this CPU cannot run it.
    pub fn set(self) -> Option<()> {
        self.is_available()
            .then(|| CHOSEN_F32_KERNEL.store(self.index(), Ordering::Relaxed))
    }

    /// # Safety
    /// As [`matmul`]'s call, and this CPU runs `self` ([`F32Kernel::is_available`]).
    unsafe fn run(
        self,
        dst: MatrixMut,
        lhs: Matrix,
        rhs: Matrix,
        accumulate: bool,
        parallelism: gemm::Parallelism,
    ) {
        // gemm's micro-kernels write column-major tiles, so a row-major `dst` is computed as
        // its transpose, dstᵀ = rhsᵀ·lhsᵀ (as `gemm::gemm` does before it dispatches).
        let transpose = dst.row_stride > 1;
        let (m, n, dst_cs, dst_rs, lhs, rhs) = if transpose {
            (dst.cols, dst.rows, dst.row_stride, 1, rhs.t(), lhs.t())
        } else {
            (dst.rows, dst.cols, 1, dst.row_stride, lhs, rhs)
        };
        macro_rules! product {
            ($simd:expr, $kernels:path, $lanes:expr) => {{
                use $kernels as k;
                gemm_common::gemm::gemm_basic_generic::<
                    _,
                    f32,
                    { $lanes },
                    { k::MR_DIV_N * $lanes },
                    { k::NR },
                    { k::MR_DIV_N },
                    { k::H_M },
                    { k::H_N },
                >(
                    $simd,
                    m,
                    n,
                    lhs.cols,
                    dst.ptr,
                    dst_cs as isize,
                    dst_rs as isize,
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
                    |a, b, c| a * b + c,
                    &k::UKR,
                    &k::H_UKR,
                    false,
                    parallelism,
                )
            }};
        }
        match self {
            #[cfg(target_arch = "x86_64")]
            F32Kernel::Avx512 => product!(
                gemm_common::simd::V4::try_new().expect("checked by is_available"),
                gemm_f32::microkernel::avx512f::f32,
                16
            ),
            #[cfg(target_arch = "x86_64")]
            F32Kernel::Avx2 => product!(
                gemm_common::simd::V3::try_new().expect("checked by is_available"),
                gemm_f32::microkernel::fma::f32,
                8
            ),
            _ => product!(
                gemm_common::simd::Scalar,
                gemm_f32::microkernel::scalar::f32,
                1
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Every kernel this CPU runs, forced, against sums in f64, on shapes with tails (rows and
    /// columns that fill no whole micro-tile), strided views, accumulation and both thread
    /// modes. `F32Kernel::set` is process-wide, so the kernels are called directly here.
    #[test]
    fn every_available_kernel_gives_the_products() {
        let mut rng = Rng::new(5);
        let kernels = F32Kernel::available();
        assert!(kernels.contains(&F32Kernel::Portable));
        assert!(kernels.contains(&F32Kernel::preferred()));
        for (m, k, n) in [(1, 1, 1), (7, 33, 5), (50, 384, 70), (129, 32, 257)] {
            let lhs: Vec<f32> = (0..m * (k + 3)).map(|_| rng.next_f32() - 0.5).collect();
            let rhs: Vec<f32> = (0..n * k).map(|_| rng.next_f32() - 0.5).collect();
            let start: Vec<f32> = (0..m * n).map(|_| rng.next_f32()).collect();
            for accumulate in [false, true] {
                let expected: Vec<f64> = (0..m * n)
                    .map(|i| {
                        let (r, c) = (i / n, i % n);
                        let dot: f64 = (0..k)
                            .map(|j| f64::from(lhs[r * (k + 3) + j]) * f64::from(rhs[c * k + j]))
                            .sum();
                        dot + if accumulate { f64::from(start[i]) } else { 0.0 }
                    })
                    .collect();
                for &kernel in &kernels {
                    for threads in [gemm::Parallelism::None, gemm::Parallelism::Rayon(0)] {
                        let mut dst = start.clone();
                        // SAFETY: the views are in bounds (checked) and `kernel` is available.
                        unsafe {
                            kernel.run(
                                MatrixMut::rows(&mut dst, 0, (m, n), n),
                                Matrix::rows(&lhs, 0, (m, k), k + 3),
                                Matrix::rows(&rhs, 0, (n, k), k).t(),
                                accumulate,
                                threads,
                            )
                        };
                        for (i, (&got, &want)) in dst.iter().zip(&expected).enumerate() {
                            assert!(
                                (f64::from(got) - want).abs() <= 1e-5 * (k as f64).sqrt() * 4.0,
                                "{kernel:?} {m}×{k}×{n} accumulate {accumulate}, value {i}: \
                                 {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn kernel_names_round_trip_and_intel_avx512_prefers_512_bits() {
        for kernel in F32Kernel::ALL {
            assert_eq!(F32Kernel::from_name(kernel.name()), Some(kernel));
        }
        assert_eq!(F32Kernel::from_name("sse"), None);
        // Few rows split across threads keep the 256-bit kernels.
        let few = F32Kernel::for_product(MIN_PARALLEL_512_ROWS - 1, Threads::All);
        let many = F32Kernel::for_product(MIN_PARALLEL_512_ROWS, Threads::All);
        assert_eq!(many, F32Kernel::current());
        assert_eq!(
            F32Kernel::for_product(1, Threads::One),
            F32Kernel::current()
        );
        let expected_few = match many {
            F32Kernel::Avx512 => F32Kernel::Avx2,
            kernel => kernel,
        };
        assert_eq!(few, expected_few);
    }
}

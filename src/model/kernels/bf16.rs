//! bf16 dense layers for inference: weights rounded to bfloat16 once, inputs rounded per
//! call, products summed in f32. On CPUs with AMX (Intel Xeon since Sapphire Rapids) the
//! products run on the tile unit (`tdpbf16ps`: 16×16 outputs × 32 inputs per instruction,
//! about 20× the f32 FMA rate per core); elsewhere the same rounded values go through the
//! f32 products, which give the same numbers up to the order of summation.

use super::bf16_pairs::{self, PairWeights};
use super::{amx, column_groups, dense_cpu_fwd, gelu_in_place, gelu_rows_in_place, rows_per_task};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};

/// Inputs per tile step: one 64-byte tile row of bf16.
pub(super) const DEPTH: usize = 32;
/// Rows of a tile.
pub(super) const TILE: usize = 16;
/// Rows and outputs of one block of four accumulator tiles (2 × 2).
pub(super) const BLOCK: usize = 2 * TILE;

pub struct Bf16Dense {
    weights: Weights,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
    gelu: bool,
}

/// The weights in the form the layer's path reads.
enum Weights {
    /// For the tile unit: by block of 32 outputs, then step of 32 inputs, then the block's two
    /// tiles, each 16 rows (pairs of inputs) × 16 outputs × 2 inputs.
    Tiles(Vec<u16>),
    /// For `vdpbf16ps` ([`bf16_pairs`]).
    Pairs(PairWeights),
    /// [outputs, inputs], rounded to bf16 and kept in f32, for the f32 products.
    Rounded(Vec<f32>),
}

/// The products bf16 layers run on: the tile unit where the CPU has one, else the rounded
/// values through the f32 products. `vdpbf16ps` (AVX512_BF16) runs where it is forced
/// ([`Bf16Kernel::set`], `GLIZNET_BF16_KERNEL`): it is chosen by default on no CPU family until
/// one is measured faster with it than in f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Kernel {
    F32,
    Avx512Bf16,
    Amx,
}

static CHOSEN_BF16_KERNEL: AtomicU8 = AtomicU8::new(u8::MAX);

impl Bf16Kernel {
    const ALL: [Bf16Kernel; 3] = [Bf16Kernel::F32, Bf16Kernel::Avx512Bf16, Bf16Kernel::Amx];

    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::F32 => "f32",
            Bf16Kernel::Avx512Bf16 => "avx512bf16",
            Bf16Kernel::Amx => "amx",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn is_available(self) -> bool {
        match self {
            Bf16Kernel::F32 => true,
            Bf16Kernel::Avx512Bf16 => bf16_pairs::available(),
            Bf16Kernel::Amx => amx::available(),
        }
    }

    /// The kernels this CPU can run.
    pub fn available() -> Vec<Self> {
        Self::ALL.into_iter().filter(|k| k.is_available()).collect()
    }

    /// The kernel layers made from now on use (the tile unit where there is one, unless
    /// [`Bf16Kernel::set`] chose another).
    pub fn current() -> Self {
        match CHOSEN_BF16_KERNEL.load(Ordering::Relaxed) {
            i if (i as usize) < Self::ALL.len() => Self::ALL[i as usize],
            _ if amx::available() => Bf16Kernel::Amx,
            _ => Bf16Kernel::F32,
        }
    }

    /// Makes every bf16 layer made later in this process use `self`; `None` if this CPU
    /// cannot run it.
    pub fn set(self) -> Option<()> {
        self.is_available()
            .then(|| CHOSEN_BF16_KERNEL.store(self as u8, Ordering::Relaxed))
    }
}

/// `v` rounded to the nearest bfloat16 (ties to even), as its 16 bits.
#[inline(always)]
pub(super) fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    // A NaN stays a NaN (rounding could carry it into infinity or wrap it to zero).
    if v.is_nan() {
        (bits >> 16) as u16 | 0x40
    } else {
        rounded
    }
}

#[inline(always)]
fn from_bf16(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

impl Bf16Dense {
    /// From an f32 weight [outputs, inputs] (row-major) and bias [outputs]; with `gelu`, the
    /// layer's outputs go through GELU (erf form).
    pub fn new(weight: &[f32], bias: &[f32], inputs: usize, outputs: usize, gelu: bool) -> Self {
        Self::with_kernel(weight, bias, inputs, outputs, gelu, Bf16Kernel::current())
    }

    fn with_kernel(
        weight: &[f32],
        bias: &[f32],
        inputs: usize,
        outputs: usize,
        gelu: bool,
        kernel: Bf16Kernel,
    ) -> Self {
        assert_eq!(weight.len(), inputs * outputs, "bf16 dense: weight size");
        assert_eq!(bias.len(), outputs, "bf16 dense: bias size");
        assert!(
            kernel.is_available(),
            "bf16 dense: {kernel:?} does not run here"
        );
        let weights = match kernel {
            Bf16Kernel::Amx => Weights::Tiles(pack_rows(outputs, inputs, weight, inputs)),
            Bf16Kernel::Avx512Bf16 => Weights::Pairs(PairWeights::pack(weight, inputs, outputs)),
            Bf16Kernel::F32 => {
                let mut rounded = weight.to_vec();
                round_in_place(&mut rounded);
                Weights::Rounded(rounded)
            }
        };
        Self {
            weights,
            bias: bias.to_vec(),
            inputs,
            outputs,
            gelu,
        }
    }

    pub fn has_gelu(&self) -> bool {
        self.gelu
    }

    /// `x·Wᵀ + b` (then GELU, if the layer has it) for the rows of `x` (each `inputs` long).
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let rounded_weights = match &self.weights {
            Weights::Tiles(packed) => return self.forward_tiles(packed, x),
            Weights::Pairs(pairs) => {
                let shape = (self.inputs, self.outputs);
                return bf16_pairs::forward(pairs, &self.bias, shape, self.gelu, x);
            }
            Weights::Rounded(rounded) => rounded,
        };
        let mut rounded_x = x.to_vec();
        round_in_place(&mut rounded_x);
        let mut y = super::linear::DenseValues {
            weight: rounded_weights,
            bias: &self.bias,
            inputs: self.inputs,
            outputs: self.outputs,
        }
        .forward(&rounded_x);
        if self.gelu {
            gelu_rows_in_place(&mut y, self.outputs);
        }
        y
    }

    fn forward_tiles(&self, packed: &[u16], x: &[f32]) -> Vec<f32> {
        let (inputs, outputs) = (self.inputs, self.outputs);
        let rows = x.len() / inputs.max(1);
        if rows == 0 || outputs == 0 {
            return vec![0.0; rows * outputs];
        }
        let depth = inputs.next_multiple_of(DEPTH);
        let padded_rows = rows.next_multiple_of(BLOCK);
        let a = padded_rounded_rows(x, inputs, depth, padded_rows);
        let column_blocks = outputs.div_ceil(BLOCK);
        let row_blocks = padded_rows / BLOCK;
        let column_groups = column_groups(row_blocks, column_blocks);
        let blocks_per_group = column_blocks.div_ceil(column_groups);
        let mut y: Vec<f32> = Vec::with_capacity(rows * outputs);
        let out = OutputRows(y.as_mut_ptr());
        (0..row_blocks * column_groups)
            .into_par_iter()
            .for_each(|task| {
                let (row_block, group) = (task / column_groups, task % column_groups);
                let first = group * blocks_per_group;
                let columns = first..(first + blocks_per_group).min(column_blocks);
                let product = Product {
                    a: &a,
                    depth,
                    rows,
                    packed,
                    outputs,
                };
                // SAFETY: the weights are packed only where `amx::available()` (the CPU has
                // the tile unit and the process may use it); the task writes only its own
                // rows × column blocks of `y`, which outlives the loop.
                unsafe { self.write_blocks(&product, row_block, columns, &out) };
            });
        // SAFETY: the tasks wrote every row of every column block, i.e. all rows × outputs
        // values.
        unsafe { y.set_len(rows * outputs) };
        y
    }

    /// Rows `row_block·32 ..` × the outputs of `columns` (blocks of 32), biased and
    /// activated.
    ///
    /// # Safety
    /// The CPU has AMX-BF16 and the process may use it; no other task writes these outputs.
    unsafe fn write_blocks(
        &self,
        product: &Product,
        row_block: usize,
        columns: std::ops::Range<usize>,
        out: &OutputRows,
    ) {
        product.on_tiles(row_block..row_block + 1, columns, |block| {
            let bias = &self.bias[block.first_column..][..block.columns];
            // SAFETY: the block's live rows × columns lie inside `y`'s capacity (rows ×
            // outputs), and only this task writes them.
            unsafe { finish_block(&block, bias, out.0, self.outputs, self.gelu) };
        });
    }
}

/// One 32 × 32 block of a product: its sums (row-major, 32 apart) and where its live part
/// (rows and columns inside the product) lies.
pub(super) struct Block<'a> {
    pub sums: &'a [f32; BLOCK * BLOCK],
    pub first_row: usize,
    pub first_column: usize,
    pub live_rows: usize,
    pub columns: usize,
}

impl<'a> Block<'a> {
    /// (row index in the product, that row's live sums).
    pub fn rows(&self) -> impl Iterator<Item = (usize, &'a [f32])> {
        let (sums, first_row, columns) = (self.sums, self.first_row, self.columns);
        sums.chunks(BLOCK)
            .take(self.live_rows)
            .enumerate()
            .map(move |(r, row)| (first_row + r, &row[..columns]))
    }
}

/// A product on the tile unit's layout: `rows` rows of `a` (bf16, `depth` apart, `depth` a
/// multiple of 32, rows padded with zeros to a multiple of 32) times the `outputs` columns
/// packed by [`pack`].
pub(super) struct Product<'a> {
    pub a: &'a [u16],
    pub depth: usize,
    pub rows: usize,
    pub packed: &'a [u16],
    pub outputs: usize,
}

impl Product<'_> {
    /// The 32-row blocks `row_blocks` × the 32-column blocks `column_blocks` on the tile unit,
    /// each block handed to `write`.
    ///
    /// # Safety
    /// [`amx::available`] is true, and `write` runs no other task on this thread (it
    /// would find the tile configuration released).
    pub unsafe fn on_tiles(
        &self,
        row_blocks: std::ops::Range<usize>,
        column_blocks: std::ops::Range<usize>,
        write: impl FnMut(Block),
    ) {
        amx::configure();
        let tiles = |a: &[u16], depth, b: &[u16], steps, sums: &mut [f32; BLOCK * BLOCK]| {
            // SAFETY: the tile unit is configured on this thread (above).
            unsafe { amx::block_bf16(a, depth, b, steps, sums) }
        };
        self.blocks(tiles, row_blocks, column_blocks, write);
        amx::release();
    }

    /// The blocks with `block` computing each (the tile unit, or in tests a plain reading of
    /// the same packed layout).
    fn blocks(
        &self,
        block: impl Fn(&[u16], usize, &[u16], usize, &mut [f32; BLOCK * BLOCK]),
        row_blocks: std::ops::Range<usize>,
        column_blocks: std::ops::Range<usize>,
        mut write: impl FnMut(Block),
    ) {
        let steps = self.depth / DEPTH;
        let step_len = 2 * TILE * DEPTH;
        let mut sums = [0.0f32; BLOCK * BLOCK];
        for row_block in row_blocks {
            let first_row = row_block * BLOCK;
            let a_block = &self.a[first_row * self.depth..][..BLOCK * self.depth];
            for column_block in column_blocks.clone() {
                let b_block = &self.packed[column_block * steps * step_len..][..steps * step_len];
                block(a_block, self.depth, b_block, steps, &mut sums);
                let first_column = column_block * BLOCK;
                write(Block {
                    sums: &sums,
                    first_row,
                    first_column,
                    live_rows: (self.rows - first_row).min(BLOCK),
                    columns: (self.outputs - first_column).min(BLOCK),
                });
            }
        }
    }
}

/// The rows of `x` (`inputs` values each) rounded to bf16, each padded with zeros to `depth`
/// values, then rows of zeros up to `padded_rows` rows: the left operand of a tile product,
/// written once (no zeroing pass first), in parallel.
pub(super) fn padded_rounded_rows(
    x: &[f32],
    inputs: usize,
    depth: usize,
    padded_rows: usize,
) -> Vec<u16> {
    let len = padded_rows * depth;
    let mut a: Vec<u16> = Vec::with_capacity(len);
    let chunk_rows = rows_per_task(depth);
    a.spare_capacity_mut()[..len]
        .par_chunks_mut(depth * chunk_rows)
        .enumerate()
        .for_each(|(task, a)| {
            let first = (task * chunk_rows * inputs).min(x.len());
            let x = &x[first..(first + chunk_rows * inputs).min(x.len())];
            with_simd!(round_padded_avx2(a: &mut [MaybeUninit<u16>], depth: usize, x: &[f32], inputs: usize) {
                let mut rows = x.chunks(inputs);
                for a in a.chunks_mut(depth) {
                    let row = rows.next().unwrap_or(&[]);
                    let (values, padding) = a.split_at_mut(row.len());
                    for (a, &v) in values.iter_mut().zip(row) {
                        a.write(to_bf16(v));
                    }
                    for a in padding {
                        a.write(0);
                    }
                }
            })
        });
    // SAFETY: every element of the first `len` was written above.
    unsafe { a.set_len(len) };
    a
}

/// `a`'s rows (`depth` apart) = the first `width` values of `x`'s rows (`x_stride` apart)
/// rounded to bf16; the rest of `a` is left as it is.
pub(super) fn round_rows(a: &mut [u16], depth: usize, x: &[f32], x_stride: usize, width: usize) {
    with_simd!(round_rows_avx2(a: &mut [u16], depth: usize, x: &[f32], x_stride: usize, width: usize) {
        for (a, x) in a.chunks_mut(depth).zip(x.chunks(x_stride)) {
            for (a, &v) in a[..width].iter_mut().zip(&x[..width]) {
                *a = to_bf16(v);
            }
        }
    })
}

/// `values` rounded to bf16 in place (kept as f32).
pub(super) fn round_in_place(values: &mut [f32]) {
    with_simd!(round_in_place_avx2(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = from_bf16(to_bf16(*v));
        }
    })
}

/// Each live row of `block` + `bias`, then GELU if `gelu`, written to row `row` of `out`
/// (`outputs` apart) at the block's columns.
///
/// # Safety
/// Those elements lie inside `out`'s allocation and no other thread reads or writes them.
unsafe fn finish_block(block: &Block, bias: &[f32], out: *mut f32, outputs: usize, gelu: bool) {
    with_simd!(finish_block_avx2(block: &Block, bias: &[f32], out: *mut f32, outputs: usize, gelu: bool) {
        let mut row_values = [0.0f32; BLOCK];
        for (row, sums) in block.rows() {
            let values = &mut row_values[..sums.len()];
            for ((v, &s), &b) in values.iter_mut().zip(sums).zip(bias) {
                *v = s + b;
            }
            if gelu {
                gelu_in_place(values);
            }
            // SAFETY: as the caller promised.
            unsafe { copy_row(values, out.add(row * outputs + block.first_column)) };
        }
    })
}

/// Copies `values` (at most [`BLOCK`]) to `dst`: a whole block's row as a copy of constant
/// length, which compiles to a few vector moves where a copy of any length is a call.
///
/// # Safety
/// `dst` is valid for `values.len()` writes.
#[inline(always)]
pub(super) unsafe fn copy_row(values: &[f32], dst: *mut f32) {
    if values.len() == BLOCK {
        std::ptr::copy_nonoverlapping(values.as_ptr(), dst, BLOCK);
    } else {
        std::ptr::copy_nonoverlapping(values.as_ptr(), dst, values.len());
    }
}

/// The weights `source[output · stride + input]` (`outputs` rows of `inputs`) rounded to bf16
/// in the order the tile unit reads them (see `Weights::Tiles`); outputs and inputs past
/// `outputs` and `inputs` are zero. Each row is rounded as a whole, then its pairs of inputs
/// are placed: keys of an attention head are packed this way, once per head and layer.
pub(super) fn pack_rows(outputs: usize, inputs: usize, source: &[f32], stride: usize) -> Vec<u16> {
    let steps = inputs.div_ceil(DEPTH);
    let depth = steps * DEPTH;
    let mut packed = vec![0u16; outputs.div_ceil(BLOCK) * steps * 2 * TILE * DEPTH];
    if outputs == 0 || inputs == 0 {
        return packed;
    }
    let mut rounded = vec![0u16; outputs * depth];
    round_rows(
        &mut rounded,
        depth,
        &source[..(outputs - 1) * stride + inputs],
        stride,
        inputs,
    );
    for (output, row) in rounded.chunks_exact(depth).enumerate() {
        let (column_block, in_block) = (output / BLOCK, output % BLOCK);
        let (tile, column) = (in_block / TILE, in_block % TILE);
        for (step, inputs) in row.chunks_exact(DEPTH).enumerate() {
            let tile_start = ((column_block * steps + step) * 2 + tile) * TILE * DEPTH;
            for (pair, values) in inputs.chunks_exact(2).enumerate() {
                packed[tile_start + pair * DEPTH + column * 2..][..2].copy_from_slice(values);
            }
        }
    }
    packed
}

/// `y`'s buffer, shared by tasks that write disjoint blocks of it.
struct OutputRows(*mut f32);
// SAFETY: see `Bf16Dense::forward_tiles`.
unsafe impl Sync for OutputRows {}

impl CustomOp1 for Bf16Dense {
    fn name(&self) -> &'static str {
        "bf16-dense"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dense_cpu_fwd(
            self.name(),
            storage,
            layout,
            (self.inputs, self.outputs),
            |x| self.forward(x),
        )
    }
}

/// Whether bf16 layers run on a kernel of their own here (the tile unit, or `vdpbf16ps` where
/// forced), not on the f32 products (no faster than f32).
pub fn has_fast_bf16_kernel() -> bool {
    Bf16Kernel::current() != Bf16Kernel::F32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(rng: &mut Rng, len: usize, scale: f32) -> Vec<f32> {
        (0..len)
            .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
            .collect()
    }

    /// The tile unit's layout written out element by element: `weight(output, input)` at
    /// block of 32 outputs, step of 32 inputs, tile of 16 outputs, pair of inputs, output in
    /// the tile, input in the pair.
    fn pack_one_by_one(
        outputs: usize,
        inputs: usize,
        weight: impl Fn(usize, usize) -> f32,
    ) -> Vec<u16> {
        let steps = inputs.div_ceil(DEPTH);
        let mut packed = vec![0u16; outputs.div_ceil(BLOCK) * steps * 2 * TILE * DEPTH];
        for output in 0..outputs {
            let (column_block, in_block) = (output / BLOCK, output % BLOCK);
            let (tile, column) = (in_block / TILE, in_block % TILE);
            for input in 0..inputs {
                let (step, in_step) = (input / DEPTH, input % DEPTH);
                let (pair, half) = (in_step / 2, in_step % 2);
                let tile_start = ((column_block * steps + step) * 2 + tile) * TILE * DEPTH;
                packed[tile_start + pair * DEPTH + column * 2 + half] =
                    to_bf16(weight(output, input));
            }
        }
        packed
    }

    /// Rows and columns of a strided source (an attention head's keys and values), at the
    /// edges of blocks, steps and pairs, with a NaN and infinities among the values.
    #[test]
    fn packing_rows_and_columns_places_every_value() {
        let mut rng = Rng::new(29);
        for (outputs, inputs) in [
            (0, 5),
            (5, 0),
            (1, 1),
            (31, 33),
            (32, 32),
            (33, 65),
            (128, 32),
            (32, 127),
        ] {
            let stride = outputs.max(inputs) + 3;
            let mut source = random(&mut rng, stride * (outputs.max(inputs) + 1), 4.0);
            source[1] = f32::NAN;
            source[2] = f32::INFINITY;
            source[stride] = f32::NEG_INFINITY;
            let rows = pack_rows(outputs, inputs, &source, stride);
            let expected = pack_one_by_one(outputs, inputs, |o, i| source[o * stride + i]);
            assert_eq!(rows, expected, "rows {outputs}×{inputs}");
        }
    }

    /// The products of the bf16-rounded values summed in f64, plus the bias.
    fn reference(x: &[f32], weight: &[f32], bias: &[f32], inputs: usize) -> Vec<f64> {
        let outputs = bias.len();
        let round = |v: f32| f64::from(from_bf16(to_bf16(v)));
        x.chunks(inputs)
            .flat_map(|row| {
                (0..outputs).map(move |o| {
                    let w = &weight[o * inputs..][..inputs];
                    row.iter()
                        .zip(w)
                        .map(|(&a, &b)| round(a) * round(b))
                        .sum::<f64>()
                        + f64::from(bias[o])
                })
            })
            .collect()
    }

    /// What `tdpbf16ps` computes on the packed layout, read plainly: row r, output c of the
    /// block sums, over steps and pairs, A[r][32·step + 2p + h] · B(step, c / 16)[p][2·(c % 16) + h].
    fn plain_block(
        a: &[u16],
        depth: usize,
        b: &[u16],
        steps: usize,
        sums: &mut [f32; BLOCK * BLOCK],
    ) {
        for r in 0..BLOCK {
            for c in 0..BLOCK {
                let (tile, column) = (c / TILE, c % TILE);
                let mut sum = 0.0f32;
                for step in 0..steps {
                    let b_tile = &b[(step * 2 + tile) * TILE * DEPTH..][..TILE * DEPTH];
                    for pair in 0..TILE {
                        for half in 0..2 {
                            sum += from_bf16(a[r * depth + step * DEPTH + 2 * pair + half])
                                * from_bf16(b_tile[pair * DEPTH + column * 2 + half]);
                        }
                    }
                }
                sums[r * BLOCK + c] = sum;
            }
        }
    }

    /// The packing and the blocking (padding of rows, inputs and outputs; live parts of the
    /// edge blocks) on every CPU, with a plain reading of the packed layout in place of the
    /// tile unit.
    #[test]
    fn packing_and_blocks_give_the_rounded_products() {
        let mut rng = Rng::new(23);
        for (rows, inputs, outputs) in [(1, 1, 1), (33, 40, 45), (64, 96, 32), (5, 384, 70)] {
            let x = random(&mut rng, rows * inputs, 2.0);
            let weight = random(&mut rng, inputs * outputs, 0.1);
            let expected = reference(&x, &weight, &vec![0.0; outputs], inputs);
            let depth = inputs.next_multiple_of(DEPTH);
            let row_blocks = rows.div_ceil(BLOCK);
            let mut a = vec![0u16; row_blocks * BLOCK * depth];
            round_rows(&mut a, depth, &x, inputs, inputs);
            let packed = pack_rows(outputs, inputs, &weight, inputs);
            let mut y = vec![f32::NAN; rows * outputs];
            let column_blocks = 0..outputs.div_ceil(BLOCK);
            let product = Product {
                a: &a,
                depth,
                rows,
                packed: &packed,
                outputs,
            };
            product.blocks(plain_block, 0..row_blocks, column_blocks, |b| {
                for (row, sums) in b.rows() {
                    y[row * outputs + b.first_column..][..b.columns].copy_from_slice(sums);
                }
            });
            for (i, (&got, &want)) in y.iter().zip(&expected).enumerate() {
                assert!(
                    (f64::from(got) - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{rows}×{inputs}→{outputs}, value {i}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(from_bf16(to_bf16(1.0 + 2f32.powi(-8))), 1.0);
        assert_eq!(
            from_bf16(to_bf16(1.0 + 3.0 * 2f32.powi(-8))),
            1.0 + 2f32.powi(-6)
        );
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        for nan in [
            f32::NAN,
            f32::from_bits(0x7fff_ffff),
            f32::from_bits(0x7f80_0001),
        ] {
            assert!(from_bf16(to_bf16(nan)).is_nan(), "{:#x}", nan.to_bits());
        }
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        let mut rng = Rng::new(3);
        for v in random(&mut rng, 1000, 100.0) {
            let r = from_bf16(to_bf16(v));
            assert!((r - v).abs() <= v.abs() * 2f32.powi(-8), "{v} → {r}");
        }
    }

    /// Every path against the plain sum of the rounded products, on shapes with ragged rows,
    /// inputs and outputs (tails of tiles and blocks) and the encoder's own.
    #[test]
    fn paths_match_the_rounded_products() {
        let mut rng = Rng::new(11);
        for (rows, inputs, outputs, gelu) in [
            (1, 32, 32, false),
            (5, 40, 20, false),
            (33, 384, 384, false),
            (70, 384, 1536, true),
            (17, 1536, 384, false),
            (3, 7, 45, true),
        ] {
            let x = random(&mut rng, rows * inputs, 2.0);
            let weight = random(&mut rng, inputs * outputs, 0.1);
            let bias = random(&mut rng, outputs, 0.5);
            let mut expected = reference(&x, &weight, &bias, inputs);
            if gelu {
                for v in expected.iter_mut() {
                    *v = f64::from(super::super::gelu(*v as f32));
                }
            }
            for kernel in Bf16Kernel::available() {
                let layer = Bf16Dense::with_kernel(&weight, &bias, inputs, outputs, gelu, kernel);
                let y = layer.forward(&x);
                assert_eq!(y.len(), rows * outputs);
                for (i, (&got, &want)) in y.iter().zip(&expected).enumerate() {
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{kernel:?}, shape {rows}×{inputs}→{outputs}, value {i}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

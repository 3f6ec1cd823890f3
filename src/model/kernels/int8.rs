//! Int8 dense layers for `--quantize` (inference on the CPU): each weight row (one output)
//! scaled to [-127, 127], each input row mapped to [0, 255] with its own scale and zero
//! point, products summed in i32. On CPUs with AMX-INT8 (Intel Xeon since Sapphire Rapids)
//! the tile unit's `tdpbusd` runs them (16 × 16 outputs × 64 inputs per instruction); with
//! AVX-512 VNNI one `vpdpbusd` does 64 multiply-adds (an f32 FMA does 16); elsewhere a
//! portable loop gives the same integers. All three give the same outputs, bit for bit.

use super::bf16::{copy_row, BLOCK};
use super::{amx, column_groups, dense_cpu_fwd, gelu_in_place, min_max_lanes, rows_per_task};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

/// Output columns per panel: four 16-lane accumulators side by side.
const PANEL: usize = 64;
/// Inputs per group: `vpdpbusd` sums four byte products into each i32 lane.
const GROUP: usize = 4;
/// Input rows per tile (6 rows × 4 accumulators and 4 weight registers fit the 32 zmm).
const TILE_ROWS: usize = 6;
/// Input rows per parallel task.
const TASK_ROWS: usize = TILE_ROWS * 8;

/// A dense layer `x·Wᵀ + b` with int8 weights.
pub struct Int8Dense {
    /// By panel, then group of four inputs, then 64 columns × 4 weights.
    packed: Vec<i8>,
    /// Per column, padded to whole panels: the weight scale, the sum of the int8 weights
    /// (to take the inputs' zero points back out) and the bias.
    scales: Vec<f32>,
    sums: Vec<i32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
    /// GELU (erf form) applied to each output as it is written.
    gelu: bool,
}

/// Input rows as bytes: x ≈ scale·(q − zero_point) per row.
struct QuantizedRows {
    values: Vec<u8>,
    scales: Vec<f32>,
    zero_points: Vec<i32>,
    width: usize,
}

impl Int8Dense {
    /// From an f32 weight [outputs, inputs] (row-major) and bias [outputs]; with `gelu`, the
    /// layer's outputs go through GELU (erf form).
    pub fn new(weight: &[f32], bias: &[f32], inputs: usize, outputs: usize, gelu: bool) -> Self {
        assert_eq!(weight.len(), inputs * outputs, "int8 dense: weight size");
        assert_eq!(bias.len(), outputs, "int8 dense: bias size");
        let groups = inputs.div_ceil(GROUP);
        let padded_outputs = outputs.next_multiple_of(PANEL);
        let mut packed = vec![0i8; padded_outputs * groups * GROUP];
        let mut scales = vec![0.0; padded_outputs];
        let mut sums = vec![0; padded_outputs];
        let mut padded_bias = vec![0.0; padded_outputs];
        for (column, row) in weight.chunks(inputs.max(1)).enumerate().take(outputs) {
            let max = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            let (panel, lane) = (column / PANEL, column % PANEL);
            for (input, &w) in row.iter().enumerate() {
                let q = round_to_integer((w / scale).clamp(-127.0, 127.0)) as i8;
                let (group, byte) = (input / GROUP, input % GROUP);
                packed[((panel * groups + group) * PANEL + lane) * GROUP + byte] = q;
                sums[column] += i32::from(q);
            }
            scales[column] = scale;
            padded_bias[column] = bias[column];
        }
        Self {
            packed,
            scales,
            sums,
            bias: padded_bias,
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
        self.products(&QuantizedRows::new(x, self.inputs), Kernel::best())
    }

    /// `next(self(x))`, the first layer's outputs quantized for the next as each block of 32
    /// rows is done. On the tile unit, with enough rows for a task per block, they are never
    /// written out in f32: an encoder block's feed-forward part reads 4 × its width less from
    /// memory. The outputs are those of the two layers run one after the other, bit for bit.
    pub fn forward_into(&self, next: &Int8Dense, x: &[f32]) -> Vec<f32> {
        assert_eq!(
            self.outputs, next.inputs,
            "int8 dense: the next layer's width"
        );
        let kernel = Kernel::best();
        let quantized = QuantizedRows::new(x, self.inputs);
        let middle = self
            .quantized_products(&quantized, kernel)
            .unwrap_or_else(|| {
                QuantizedRows::new(&self.products(&quantized, kernel), self.outputs)
            });
        next.products(&middle, kernel)
    }

    /// How the tile unit's tasks split `rows`: (blocks of 32 rows, groups of panels per block).
    fn tile_tasks(&self, rows: usize) -> (usize, usize) {
        let row_blocks = rows.div_ceil(BLOCK);
        (
            row_blocks,
            column_groups(row_blocks, self.scales.len() / PANEL),
        )
    }

    fn products(&self, quantized: &QuantizedRows, kernel: Kernel) -> Vec<f32> {
        let rows = quantized.scales.len();
        let mut y: Vec<f32> = Vec::with_capacity(rows * self.outputs);
        let panels = self.scales.len() / PANEL;
        let out = OutputRows::new(y.as_mut_ptr());
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Amx && quantized.width.is_multiple_of(tiles::STEP) {
            let (row_blocks, groups) = self.tile_tasks(rows);
            let per_group = panels.div_ceil(groups);
            (0..row_blocks * groups).into_par_iter().for_each(|task| {
                let (row_block, group) = (task / groups, task % groups);
                let panels = group * per_group..((group + 1) * per_group).min(panels);
                // SAFETY: `Kernel::Amx` is chosen only where the tile unit runs int8; the
                // task writes only its own rows × panels of `y`'s capacity.
                unsafe { tiles::panels(self, quantized, row_block, panels, &out) }
            });
            // SAFETY: the tasks wrote every row of every panel.
            unsafe { y.set_len(rows * self.outputs) };
            return y;
        }
        (0..rows.div_ceil(TASK_ROWS) * panels)
            .into_par_iter()
            .for_each(|task| {
                let (row_block, panel) = (task / panels, task % panels);
                let first = row_block * TASK_ROWS;
                let last = (first + TASK_ROWS).min(rows);
                for tile in (first..last).step_by(TILE_ROWS) {
                    let tile = tile..(tile + TILE_ROWS).min(last);
                    // SAFETY: each task writes its own rows × panel columns of `y`'s
                    // capacity, which outlives the parallel loop.
                    unsafe { kernel.tile(self, quantized, tile, panel, &out) }
                }
            });
        // SAFETY: the tasks wrote every row of every panel, i.e. all rows × outputs values.
        unsafe { y.set_len(rows * self.outputs) };
        y
    }

    /// The layer's outputs for `quantized`, quantized as the next layer's inputs by the task
    /// that computed each block of 32 rows, from its own buffer; `None` where the tile unit
    /// does not run this layer or the rows are too few for a task per block.
    fn quantized_products(
        &self,
        quantized: &QuantizedRows,
        kernel: Kernel,
    ) -> Option<QuantizedRows> {
        #[cfg(target_arch = "x86_64")]
        {
            let rows = quantized.scales.len();
            let (row_blocks, groups) = self.tile_tasks(rows);
            if kernel != Kernel::Amx || !quantized.width.is_multiple_of(tiles::STEP) || groups > 1 {
                return None;
            }
            let panels = 0..self.scales.len() / PANEL;
            let mut middle = QuantizedRows::zeros(rows, self.outputs);
            let width = middle.width;
            middle.values[..row_blocks * BLOCK * width]
                .par_chunks_mut(BLOCK * width)
                .zip(middle.scales.par_chunks_mut(BLOCK))
                .zip(middle.zero_points.par_chunks_mut(BLOCK))
                .enumerate()
                .for_each_init(
                    Vec::new,
                    |block_outputs: &mut Vec<f32>, (row_block, ((values, scales), zero_points))| {
                        let live = scales.len();
                        block_outputs.clear();
                        block_outputs.reserve(live * self.outputs);
                        let out = OutputRows {
                            values: block_outputs.as_mut_ptr(),
                            first_row: row_block * BLOCK,
                        };
                        // SAFETY: `Kernel::Amx` is chosen only where the tile unit runs int8; the
                        // task writes its own block's live rows, all of `block_outputs`' capacity.
                        unsafe {
                            tiles::panels(self, quantized, row_block, panels.clone(), &out);
                            block_outputs.set_len(live * self.outputs);
                        }
                        quantize_rows(
                            block_outputs,
                            self.outputs,
                            &mut values[..live * width],
                            scales,
                            zero_points,
                        );
                    },
                );
            Some(middle)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (quantized, kernel);
            None
        }
    }
}

/// An output buffer shared by tasks that write disjoint tiles of it: rows `first_row`.. of
/// the layer's outputs, `outputs` apart.
struct OutputRows {
    values: *mut f32,
    first_row: usize,
}
// SAFETY: see `Int8Dense::products`.
unsafe impl Sync for OutputRows {}

impl OutputRows {
    fn new(values: *mut f32) -> Self {
        Self {
            values,
            first_row: 0,
        }
    }

    /// Where output `row`, `column` lies.
    ///
    /// # Safety
    /// The buffer holds that output.
    #[inline(always)]
    unsafe fn at(&self, row: usize, column: usize, outputs: usize) -> *mut f32 {
        self.values.add((row - self.first_row) * outputs + column)
    }
}

impl QuantizedRows {
    /// `rows` rows of `inputs` zero bytes, in whole blocks of rows for the tile unit, which
    /// reads 32 at a time (the rows past `rows` stay zeros, and their products are not
    /// written).
    fn zeros(rows: usize, inputs: usize) -> Self {
        let width = inputs.max(1).div_ceil(GROUP) * GROUP;
        Self {
            values: vec![0u8; rows.next_multiple_of(BLOCK) * width],
            scales: vec![0.0; rows],
            zero_points: vec![0; rows],
            width,
        }
    }

    fn new(x: &[f32], inputs: usize) -> Self {
        let inputs = inputs.max(1);
        let rows = x.len() / inputs;
        let mut quantized = Self::zeros(rows, inputs);
        let width = quantized.width;
        let chunk = rows_per_task(width);
        quantized.values[..rows * width]
            .par_chunks_mut(width * chunk)
            .zip(quantized.scales.par_chunks_mut(chunk))
            .zip(quantized.zero_points.par_chunks_mut(chunk))
            .zip(x.par_chunks(inputs * chunk))
            .for_each(|(((values, scales), zero_points), x)| {
                quantize_rows(x, inputs, values, scales, zero_points)
            });
        quantized
    }
}

fn quantize_rows(
    x: &[f32],
    inputs: usize,
    values: &mut [u8],
    scales: &mut [f32],
    zero_points: &mut [i32],
) {
    with_simd!(quantize_rows_avx2(x: &[f32], inputs: usize, values: &mut [u8], scales: &mut [f32], zero_points: &mut [i32]) {
        let width = values.len() / scales.len().max(1);
        for (((row, q), scale), zero_point) in x
            .chunks(inputs)
            .zip(values.chunks_mut(width))
            .zip(scales.iter_mut())
            .zip(zero_points.iter_mut())
        {
            (*scale, *zero_point) = quantize_row(row, q);
        }
    })
}

/// Maps `row` onto bytes over [min(row, 0), max(row, 0)], 0 exactly representable; the
/// padding after it gets the zero point. Returns (scale, zero point).
#[inline(always)]
fn quantize_row(row: &[f32], q: &mut [u8]) -> (f32, i32) {
    let (min, max) = min_max_lanes(row, 0.0);
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    let inverse = 1.0 / scale;
    let zero_point = round_to_byte(-min * inverse);
    for (byte, &v) in q.iter_mut().zip(row) {
        // SAFETY: `round_to_byte` gives an integer in [0, 255].
        *byte = unsafe { round_to_byte(v * inverse + zero_point).to_int_unchecked::<i32>() } as u8;
    }
    q[row.len()..].fill(zero_point as u8);
    (scale, zero_point as i32)
}

/// `v` clamped to [0, 255] (NaN to 0) and rounded to the nearest integer.
#[inline(always)]
#[allow(clippy::manual_clamp)] // `clamp` keeps NaN, which the caller's conversion must not see
fn round_to_byte(v: f32) -> f32 {
    round_to_integer(v.max(0.0).min(255.0))
}

/// `v` (|v| < 2^22) rounded to the nearest integer, ties to even, by adding and subtracting
/// 1.5·2^23: what `round_ties_even` does, but inlined and vectorized where that is a library
/// call.
#[inline(always)]
fn round_to_integer(v: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    (v + ROUND) - ROUND
}

/// Whether this CPU runs the fast (AVX-512 VNNI) kernel; the portable one measured about 4×
/// slower than f32 on the encoder's layer shapes (BENCHMARKS.md).
pub fn has_fast_int8_kernel() -> bool {
    Kernel::best() != Kernel::Portable
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Vnni,
    /// The tile unit's byte products (`tdpbusd`), for layers whose inputs come in whole steps
    /// of 64; VNNI for the others.
    #[cfg(target_arch = "x86_64")]
    Amx,
}

impl Kernel {
    fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        if amx::available_int8() {
            return Kernel::Amx;
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
        {
            return Kernel::Vnni;
        }
        Kernel::Portable
    }

    /// Writes rows `tile` (at most [`TILE_ROWS`]) × columns of `panel` of the output.
    ///
    /// # Safety
    /// `out` holds rows × `layer.outputs` values and no other thread writes this tile.
    unsafe fn tile(
        self,
        layer: &Int8Dense,
        x: &QuantizedRows,
        tile: std::ops::Range<usize>,
        panel: usize,
        out: &OutputRows,
    ) {
        match self {
            Kernel::Portable => portable_tile(layer, x, tile, panel, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni | Kernel::Amx => match tile.len() {
                6 => vnni::tile::<6>(layer, x, tile.start, panel, out),
                5 => vnni::tile::<5>(layer, x, tile.start, panel, out),
                4 => vnni::tile::<4>(layer, x, tile.start, panel, out),
                3 => vnni::tile::<3>(layer, x, tile.start, panel, out),
                2 => vnni::tile::<2>(layer, x, tile.start, panel, out),
                _ => vnni::tile::<1>(layer, x, tile.start, panel, out),
            },
        }
    }
}

/// The output value for an accumulated byte product: the zero point taken back out, both
/// scales applied, the bias added (fused, as the VNNI epilogue does).
#[inline(always)]
fn dequantize(layer: &Int8Dense, x: &QuantizedRows, row: usize, column: usize, acc: i32) -> f32 {
    let input = (x.zero_points[row], x.scales[row]);
    let weight = (layer.sums[column], layer.scales[column], layer.bias[column]);
    dequantize_value(acc, input, weight)
}

/// [`dequantize`] from the row's (zero point, scale) and the column's (weight sum, scale,
/// bias).
#[inline(always)]
fn dequantize_value(
    acc: i32,
    (zero_point, row_scale): (i32, f32),
    (sum, column_scale, bias): (i32, f32, f32),
) -> f32 {
    let centered = acc.wrapping_sub(zero_point.wrapping_mul(sum)) as f32;
    centered.mul_add(row_scale * column_scale, bias)
}

/// Adds the products of one row of input bytes with a panel's weights to `acc`.
fn portable_products(input: &[u8], weights: &[i8], acc: &mut [i32; PANEL]) {
    with_simd!(portable_products_avx2(input: &[u8], weights: &[i8], acc: &mut [i32; PANEL]) {
        for (bytes, group) in input
            .chunks_exact(GROUP)
            .zip(weights.chunks_exact(PANEL * GROUP))
        {
            let a = [0, 1, 2, 3].map(|i| i32::from(bytes[i]));
            for (lane, w) in acc.iter_mut().zip(group.chunks_exact(GROUP)) {
                let sum = a[0] * i32::from(w[0])
                    + a[1] * i32::from(w[1])
                    + a[2] * i32::from(w[2])
                    + a[3] * i32::from(w[3]);
                *lane = lane.wrapping_add(sum);
            }
        }
    })
}

/// # Safety
/// As [`Kernel::tile`].
unsafe fn portable_tile(
    layer: &Int8Dense,
    x: &QuantizedRows,
    tile: std::ops::Range<usize>,
    panel: usize,
    out: &OutputRows,
) {
    let groups = x.width / GROUP;
    let weights = &layer.packed[panel * groups * PANEL * GROUP..][..groups * PANEL * GROUP];
    for row in tile {
        let input = &x.values[row * x.width..][..x.width];
        let mut acc = [0i32; PANEL];
        portable_products(input, weights, &mut acc);
        let columns = panel * PANEL..((panel + 1) * PANEL).min(layer.outputs);
        for (column, &acc) in columns.clone().zip(&acc) {
            *out.at(row, column, layer.outputs) = dequantize(layer, x, row, column, acc);
        }
        finish_row(layer, out, row, columns);
    }
}

/// Applies the layer's GELU, if any, to `columns` of output `row` once they are written.
///
/// # Safety
/// As [`Kernel::tile`]; the values are written.
#[inline(always)]
unsafe fn finish_row(
    layer: &Int8Dense,
    out: &OutputRows,
    row: usize,
    columns: std::ops::Range<usize>,
) {
    if layer.gelu {
        let values = std::slice::from_raw_parts_mut(
            out.at(row, columns.start, layer.outputs),
            columns.len(),
        );
        gelu_in_place(values);
    }
}

#[cfg(target_arch = "x86_64")]
mod tiles {
    use super::{
        amx, copy_row, dequantize_value, gelu_in_place, Int8Dense, OutputRows, QuantizedRows,
        BLOCK, GROUP, PANEL,
    };

    /// Inputs per tile step.
    pub(super) const STEP: usize = 64;

    /// Rows `row_block`·32.. (those that exist) × the columns of `panels` (64 each), as
    /// 32 × 32 blocks on the tile unit, dequantized as the VNNI kernel does (the same integer
    /// sums, the same fused multiply-add), biased and activated.
    ///
    /// # Safety
    /// As `Kernel::tile`; the CPU runs AMX-INT8 ([`amx::available_int8`]); `x.width` is a
    /// multiple of [`STEP`] and `x.values` holds whole blocks of 32 rows.
    pub(super) unsafe fn panels(
        layer: &Int8Dense,
        x: &QuantizedRows,
        row_block: usize,
        panels: std::ops::Range<usize>,
        out: &OutputRows,
    ) {
        let first_row = row_block * BLOCK;
        let rows = first_row..(first_row + BLOCK).min(x.scales.len());
        let groups = x.width / GROUP;
        let a = x.values.as_ptr().add(first_row * x.width);
        let mut sums = [0i32; BLOCK * BLOCK];
        debug_assert!(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma"));
        amx::configure();
        for panel in panels {
            let weights = layer.packed.as_ptr().add(panel * groups * PANEL * GROUP);
            for half in 0..PANEL / BLOCK {
                let first_column = panel * PANEL + half * BLOCK;
                if first_column >= layer.outputs {
                    break;
                }
                let b = weights.add(half * BLOCK * GROUP);
                amx::block_u8i8(a, x.width, b, PANEL * GROUP, x.width / STEP, &mut sums);
                let columns = first_column..(first_column + BLOCK).min(layer.outputs);
                dequantize_block(layer, x, &sums, rows.clone(), columns, out);
            }
        }
        amx::release();
    }

    /// Writes `rows` × `columns` of the output from a block's sums (row-major, 32 apart),
    /// compiled for AVX-512 as a whole: every CPU with AMX-INT8 has it.
    ///
    /// # Safety
    /// As `Kernel::tile`: those outputs lie in `out` and no other thread writes them; the CPU
    /// has AVX-512 F and FMA.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn dequantize_block(
        layer: &Int8Dense,
        x: &QuantizedRows,
        sums: &[i32; BLOCK * BLOCK],
        rows: std::ops::Range<usize>,
        columns: std::ops::Range<usize>,
        out: &OutputRows,
    ) {
        let column_sums = &layer.sums[columns.clone()];
        let column_scales = &layer.scales[columns.clone()];
        let bias = &layer.bias[columns.clone()];
        let mut values = [0.0f32; BLOCK];
        for (r, row) in rows.enumerate() {
            let input = (x.zero_points[row], x.scales[row]);
            let values = &mut values[..columns.len()];
            let sums = &sums[r * BLOCK..][..columns.len()];
            for ((((v, &acc), &sum), &scale), &b) in values
                .iter_mut()
                .zip(sums)
                .zip(column_sums)
                .zip(column_scales)
                .zip(bias)
            {
                *v = dequantize_value(acc, input, (sum, scale, b));
            }
            if layer.gelu {
                gelu_in_place(values);
            }
            copy_row(values, out.at(row, columns.start, layer.outputs));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{finish_row, Int8Dense, OutputRows, QuantizedRows, GROUP, PANEL};
    use std::arch::x86_64::*;

    const LANES: usize = 16;
    const BLOCKS: usize = PANEL / LANES;

    /// # Safety
    /// As `Kernel::tile`, on a CPU with AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile<const ROWS: usize>(
        layer: &Int8Dense,
        x: &QuantizedRows,
        first_row: usize,
        panel: usize,
        out: &OutputRows,
    ) {
        let groups = x.width / GROUP;
        let weights = layer.packed.as_ptr().add(panel * groups * PANEL * GROUP);
        let inputs = x.values.as_ptr().add(first_row * x.width);
        let mut acc = [[_mm512_setzero_si512(); BLOCKS]; ROWS];
        for group in 0..groups {
            let w = weights.add(group * PANEL * GROUP);
            let w: [__m512i; BLOCKS] =
                std::array::from_fn(|b| _mm512_loadu_si512(w.add(b * LANES * GROUP).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let bytes = inputs.add(r * x.width + group * GROUP).cast::<i32>();
                let a = _mm512_set1_epi32(bytes.read_unaligned());
                for (acc, &w) in acc.iter_mut().zip(&w) {
                    *acc = _mm512_dpbusd_epi32(*acc, a, w);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = first_row + r;
            let zero_point = _mm512_set1_epi32(x.zero_points[row]);
            let row_scale = _mm512_set1_ps(x.scales[row]);
            for (b, &acc) in acc.iter().enumerate() {
                let column = panel * PANEL + b * LANES;
                if column < layer.outputs {
                    let sums = _mm512_loadu_si512(layer.sums.as_ptr().add(column).cast());
                    let scales = _mm512_loadu_ps(layer.scales.as_ptr().add(column));
                    let bias = _mm512_loadu_ps(layer.bias.as_ptr().add(column));
                    let centered = _mm512_sub_epi32(acc, _mm512_mullo_epi32(zero_point, sums));
                    let value = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(centered),
                        _mm512_mul_ps(row_scale, scales),
                        bias,
                    );
                    let valid = (layer.outputs - column).min(LANES);
                    let mask = (((1u32 << valid) - 1) & 0xffff) as __mmask16;
                    _mm512_mask_storeu_ps(out.at(row, column, layer.outputs), mask, value);
                }
            }
            let columns = panel * PANEL..((panel + 1) * PANEL).min(layer.outputs);
            finish_row(layer, out, row, columns);
        }
    }
}

impl CustomOp1 for Int8Dense {
    fn name(&self) -> &'static str {
        "int8-dense"
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

/// Two int8 layers in a row as one op, `second(first(x))` (see [`Int8Dense::forward_into`]).
pub struct Int8Chain<'a> {
    pub first: &'a Int8Dense,
    pub second: &'a Int8Dense,
}

impl CustomOp1 for Int8Chain<'_> {
    fn name(&self) -> &'static str {
        "int8-chain"
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
            (self.first.inputs, self.second.outputs),
            |x| self.first.forward_into(self.second, x),
        )
    }
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

    /// The integer products computed plainly from the quantized values.
    fn reference(layer: &Int8Dense, x: &[f32], weight: &[f32]) -> Vec<f32> {
        let quantized = QuantizedRows::new(x, layer.inputs);
        let rows = x.len() / layer.inputs;
        let mut y = vec![0.0; rows * layer.outputs];
        for row in 0..rows {
            for column in 0..layer.outputs {
                let w_row = &weight[column * layer.inputs..][..layer.inputs];
                let acc: i32 = (0..layer.inputs)
                    .map(|i| {
                        let q = (w_row[i] / layer.scales[column])
                            .round_ties_even()
                            .clamp(-127.0, 127.0) as i32;
                        i32::from(quantized.values[row * quantized.width + i]) * q
                    })
                    .sum();
                y[row * layer.outputs + column] = dequantize(layer, &quantized, row, column, acc);
            }
        }
        y
    }

    fn forward_with(layer: &Int8Dense, x: &[f32], kernel: Kernel) -> Vec<f32> {
        layer.products(&QuantizedRows::new(x, layer.inputs), kernel)
    }

    /// Two layers through `forward_into` against one after the other: rows too few for a task
    /// per block (the plain path), rows enough for one (the tile unit's path, where it runs),
    /// a last block partly filled; middle widths of whole and partial tile steps.
    #[test]
    fn chained_layers_give_the_outputs_of_one_after_the_other() {
        let mut rng = Rng::new(13);
        for (rows, inputs, middle, outputs) in [
            (1, 64, 128, 64),
            (40, 128, 256, 64),
            (200, 128, 256, 70),
            (257, 64, 192, 64),
            (150, 64, 100, 64),
        ] {
            let first = Int8Dense::new(
                &random(&mut rng, inputs * middle, 0.2),
                &random(&mut rng, middle, 1.0),
                inputs,
                middle,
                true,
            );
            let second = Int8Dense::new(
                &random(&mut rng, middle * outputs, 0.2),
                &random(&mut rng, outputs, 1.0),
                middle,
                outputs,
                false,
            );
            let x = random(&mut rng, rows * inputs, 3.0);
            let expected = second.forward(&first.forward(&x));
            assert_eq!(
                first.forward_into(&second, &x),
                expected,
                "{rows} rows, {middle} wide"
            );
        }
    }

    #[test]
    fn kernels_give_the_exact_integer_products() {
        let mut rng = Rng::new(7);
        // Widths that are and are not multiples of the group and panel, rows that leave
        // partial tiles and tasks; with and without GELU.
        for (rows, inputs, outputs, gelu) in [
            (1, 8, 16, false),
            (7, 30, 70, true),
            (53, 384, 64, false),
            (13, 65, 130, true),
            // Whole steps of 64 inputs (the tile unit's path), rows across blocks of 32,
            // outputs that end inside a block.
            (70, 128, 100, true),
            (33, 192, 40, false),
            (32, 1536, 384, false),
        ] {
            let weight = random(&mut rng, inputs * outputs, 0.2);
            let bias = random(&mut rng, outputs, 1.0);
            let x = random(&mut rng, rows * inputs, 3.0);
            let layer = Int8Dense::new(&weight, &bias, inputs, outputs, gelu);
            let mut expected = reference(&layer, &x, &weight);
            if gelu {
                expected
                    .iter_mut()
                    .for_each(|y| *y = super::super::gelu(*y));
            }
            assert_eq!(forward_with(&layer, &x, Kernel::Portable), expected);
            assert_eq!(layer.forward(&x), expected, "{:?}", Kernel::best());
            #[cfg(target_arch = "x86_64")]
            for (kernel, runs) in [
                (Kernel::Vnni, Kernel::best() != Kernel::Portable),
                (Kernel::Amx, amx::available_int8()),
            ] {
                if runs {
                    assert_eq!(forward_with(&layer, &x, kernel), expected, "{kernel:?}");
                }
            }
        }
    }

    #[test]
    fn products_are_close_to_f32() {
        let mut rng = Rng::new(11);
        let (rows, inputs, outputs) = (20, 384, 96);
        let weight = random(&mut rng, inputs * outputs, 0.1);
        let bias = random(&mut rng, outputs, 1.0);
        // One row all zeros, one constant, one with a single large value.
        let mut x = random(&mut rng, rows * inputs, 2.0);
        x[..inputs].fill(0.0);
        x[inputs..2 * inputs].fill(-0.5);
        x[2 * inputs + 5] = 40.0;
        let layer = Int8Dense::new(&weight, &bias, inputs, outputs, false);
        let y = layer.forward(&x);
        for row in 0..rows {
            let x_row = &x[row * inputs..][..inputs];
            let row_range = x_row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for column in 0..outputs {
                let w_row = &weight[column * inputs..][..inputs];
                let exact: f32 =
                    bias[column] + x_row.iter().zip(w_row).map(|(a, w)| a * w).sum::<f32>();
                let got = y[row * outputs + column];
                // Each product errs by at most half a step of each factor.
                let bound =
                    inputs as f32 * (row_range / 255.0 * 0.1 + 0.1 / 254.0 * row_range) + 1e-4;
                assert!(
                    (got - exact).abs() <= bound,
                    "row {row} col {column}: {got} vs {exact}"
                );
            }
        }
        // Zeros quantize exactly: the first row is the bias.
        assert_eq!(&y[..outputs], &bias[..]);
    }
}

//! bf16 dense layers on AVX512_BF16 (`vdpbf16ps`: Intel since Cooper Lake, AMD Zen 4 and
//! Zen 5), for CPUs without the tile unit: each instruction sums 16 lanes × one pair of bf16
//! products into f32, 32 multiply-adds where an f32 FMA does 16. The same rounded values as the
//! other bf16 paths, summed in another order.

use super::bf16::{padded_rounded_rows, to_bf16};
use super::gelu_in_place;
use rayon::prelude::*;

/// Output columns per panel: four 16-lane accumulators side by side.
const PANEL: usize = 64;
/// Input rows per register tile (6 rows × 4 accumulators and 4 weight registers fit the 32
/// zmm).
const TILE_ROWS: usize = 6;
/// Input rows per parallel task.
const TASK_ROWS: usize = TILE_ROWS * 8;

/// The weights as `vdpbf16ps` reads them: by panel of 64 outputs, then pair of inputs, then
/// the panel's 64 outputs × the pair's two bf16 values (zeros past the last input or output).
pub(super) struct PairWeights {
    packed: Vec<u16>,
    pairs: usize,
    panels: usize,
}

impl PairWeights {
    pub fn pack(weight: &[f32], inputs: usize, outputs: usize) -> Self {
        let pairs = inputs.div_ceil(2);
        let panels = outputs.div_ceil(PANEL);
        let mut packed = vec![0u16; panels * pairs * PANEL * 2];
        for (output, row) in weight.chunks(inputs.max(1)).enumerate().take(outputs) {
            let (panel, lane) = (output / PANEL, output % PANEL);
            for (input, &w) in row.iter().enumerate() {
                let (pair, half) = (input / 2, input % 2);
                packed[((panel * pairs + pair) * PANEL + lane) * 2 + half] = to_bf16(w);
            }
        }
        Self {
            packed,
            pairs,
            panels,
        }
    }
}

/// `x·Wᵀ + b`, then GELU if `gelu`, for the rows of `x` (`inputs` each), on a CPU with
/// AVX512_BF16 ([`available`]).
pub(super) fn forward(
    weights: &PairWeights,
    bias: &[f32],
    (inputs, outputs): (usize, usize),
    gelu: bool,
    x: &[f32],
) -> Vec<f32> {
    assert!(available(), "bf16 pairs: this CPU has no AVX512_BF16");
    let rows = x.len() / inputs.max(1);
    let depth = 2 * weights.pairs;
    let a = padded_rounded_rows(x, inputs, depth, rows);
    let mut y: Vec<f32> = Vec::with_capacity(rows * outputs);
    let out = Output(y.as_mut_ptr());
    let layer = Layer {
        weights,
        bias,
        outputs,
        gelu,
    };
    (0..rows.div_ceil(TASK_ROWS) * weights.panels)
        .into_par_iter()
        .for_each(|task| {
            let (row_block, panel) = (task / weights.panels, task % weights.panels);
            let first = row_block * TASK_ROWS;
            let last = (first + TASK_ROWS).min(rows);
            for tile in (first..last).step_by(TILE_ROWS) {
                let tile = tile..(tile + TILE_ROWS).min(last);
                // SAFETY: the CPU has AVX512_BF16 (asserted above); the task writes only its
                // own rows × panel columns of `y`'s capacity, which outlives the loop.
                unsafe { layer.tile(&a, depth, tile, panel, &out) }
            }
        });
    // SAFETY: the tasks wrote every row of every panel, i.e. all rows × outputs values.
    unsafe { y.set_len(rows * outputs) };
    y
}

/// Whether this CPU runs `vdpbf16ps` (with AVX-512 F).
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

struct Layer<'a> {
    weights: &'a PairWeights,
    bias: &'a [f32],
    outputs: usize,
    gelu: bool,
}

/// `y`'s buffer, shared by tasks that write disjoint tiles of it.
struct Output(*mut f32);
// SAFETY: see `forward`.
unsafe impl Sync for Output {}

impl Layer<'_> {
    /// # Safety
    /// The CPU has AVX512_BF16; `out` holds rows × `outputs` values and no other thread
    /// writes this tile.
    unsafe fn tile(
        &self,
        a: &[u16],
        depth: usize,
        tile: std::ops::Range<usize>,
        panel: usize,
        out: &Output,
    ) {
        #[cfg(target_arch = "x86_64")]
        match tile.len() {
            6 => self.rows::<6>(a, depth, tile.start, panel, out),
            5 => self.rows::<5>(a, depth, tile.start, panel, out),
            4 => self.rows::<4>(a, depth, tile.start, panel, out),
            3 => self.rows::<3>(a, depth, tile.start, panel, out),
            2 => self.rows::<2>(a, depth, tile.start, panel, out),
            _ => self.rows::<1>(a, depth, tile.start, panel, out),
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "no AVX512_BF16 on this target: {a:?} {depth} {tile:?} {panel} {:p}",
            out.0
        )
    }

    /// Rows `first_row..first_row + ROWS` × the 64 columns of `panel`.
    ///
    /// # Safety
    /// As [`Layer::tile`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn rows<const ROWS: usize>(
        &self,
        a: &[u16],
        depth: usize,
        first_row: usize,
        panel: usize,
        out: &Output,
    ) {
        use std::arch::x86_64::*;
        const LANES: usize = 16;
        let pairs = self.weights.pairs;
        let weights = self.weights.packed.as_ptr().add(panel * pairs * PANEL * 2);
        let inputs = a.as_ptr().add(first_row * depth);
        let mut acc = [[_mm512_setzero_ps(); PANEL / LANES]; ROWS];
        for pair in 0..pairs {
            let w = weights.add(pair * PANEL * 2);
            let w: [__m512bh; PANEL / LANES] = std::array::from_fn(|b| {
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    w.add(b * LANES * 2).cast(),
                ))
            });
            for (r, acc) in acc.iter_mut().enumerate() {
                let values = inputs.add(r * depth + 2 * pair).cast::<i32>();
                let a = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                    values.read_unaligned(),
                ));
                for (acc, &w) in acc.iter_mut().zip(&w) {
                    *acc = _mm512_dpbf16_ps(*acc, a, w);
                }
            }
        }
        let columns = panel * PANEL..((panel + 1) * PANEL).min(self.outputs);
        let bias = &self.bias[columns.clone()];
        let mut row_values = [0.0f32; PANEL];
        for (r, acc) in acc.iter().enumerate() {
            for (b, &acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(row_values.as_mut_ptr().add(b * LANES), acc);
            }
            let values = &mut row_values[..columns.len()];
            for (v, &b) in values.iter_mut().zip(bias) {
                *v += b;
            }
            if self.gelu {
                gelu_in_place(values);
            }
            let dst = out.0.add((first_row + r) * self.outputs + columns.start);
            std::ptr::copy_nonoverlapping(values.as_ptr(), dst, values.len());
        }
    }
}

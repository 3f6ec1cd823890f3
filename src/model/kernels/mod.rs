//! CPU kernels for the encoder where candle's generic ops are slow, each with its backward
//! pass where training needs one: GELU (the erf form BERT uses; candle calls scalar `erf`
//! per element), dense layers, LayerNorm and multi-head attention as single ops (candle's
//! autograd builds each from several broadcast ops and fills and adds a zero gradient per
//! node), a whole encoder block as one op for training (`block`), and int8 dense layers for
//! inference (`int8`). erf and exp are polynomials the compiler vectorizes (AVX2 where the
//! CPU has it); work is split across threads with rayon. Other devices and dtypes use
//! candle's ops.
//!
//! One contract for every kernel: [`uses_cpu_kernels`] says where they apply, the caller
//! (`model::bert`) decides and keeps the fallback, and a kernel given other tensors fails.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

/// erf(x) ≈ x·P(x²)/Q(x²) on [-4, 4] (|erf| differs from 1 by < 2e-8 beyond): a least-squares
/// fit made for this project, max error 3.5e-7 when evaluated in f32.
const ERF_P: [f32; 7] = [
    1.128_378_9,
    0.208_914_76,
    0.051_757_89,
    0.004_077_120_7,
    0.000_150_242_69,
    -1.969_929_8e-6,
    1.933_584e-8,
];
const ERF_Q: [f32; 5] = [
    1.0,
    0.518_475_06,
    0.118_710_75,
    0.015_116_021,
    0.001_045_276_5,
];

#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let t = x * x;
    let p = ERF_P.iter().rev().fold(0.0, |acc, &c| acc * t + c);
    let q = ERF_Q.iter().rev().fold(0.0, |acc, &c| acc * t + c);
    (x * p / q).clamp(-1.0, 1.0)
}

/// e^x for x ≤ 88 (0 below -87): x = n·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor series
/// to degree 7, 2^n through the exponent bits. Relative error ≤ 1e-7.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting it rounds to an integer
    let clamped = x.clamp(-87.0, 88.0);
    // n sits in the low mantissa bits of `shifted`; reading it from there rather than with
    // `as i32` (a saturating conversion the compiler does one lane at a time) keeps the
    // function vectorized.
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    let mut poly = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        poly = poly * r + c;
    }
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if x < -87.0 {
        0.0
    } else {
        poly * scale
    }
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn gelu_rows(src: &[f32], dst: &mut [f32]) {
    for (out, &x) in dst.iter_mut().zip(src) {
        *out = gelu(x);
    }
}

/// d/dx GELU(x) = Φ(x) + x·φ(x).
#[inline(always)]
fn gelu_derivative_rows(src: &[f32], dst: &mut [f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for (out, &x) in dst.iter_mut().zip(src) {
        let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
        *out = cdf + x * INV_SQRT_2PI * exp(-0.5 * x * x);
    }
}

/// Replaces `row` by the softmax of `row · scale + mask` (`mask` as long as the row). Written
/// as passes over whole 16-lane chunks, the row's tail padded to a chunk with −∞ (probability
/// 0), so that each pass vectorizes with no scalar remainder: attention rows are short (a
/// short text's 20–40 keys), where a remainder loop would cost as much as the vector part.
#[inline(always)]
fn masked_softmax_row(row: &mut [f32], scale: f32, mask: &[f32]) {
    const LANES: usize = 16;
    let full = row.len() / LANES * LANES;
    let (head, rest) = row.split_at_mut(full);
    let mut tail = [f32::NEG_INFINITY; LANES];
    let mut tail_mask = [0.0; LANES];
    tail[..rest.len()].copy_from_slice(rest);
    tail_mask[..rest.len()].copy_from_slice(&mask[full..]);
    let mut highest = [f32::NEG_INFINITY; LANES];
    let mut scale_chunk = |x: &mut [f32], m: &[f32]| {
        for ((x, &m), h) in x.iter_mut().zip(m).zip(highest.iter_mut()) {
            *x = *x * scale + m;
            *h = if *x > *h { *x } else { *h };
        }
    };
    for (x, m) in head.chunks_exact_mut(LANES).zip(mask.chunks_exact(LANES)) {
        scale_chunk(x, m);
    }
    scale_chunk(&mut tail, &tail_mask);
    let max = fold_halves(highest, |a, b| if b > a { b } else { a });
    let mut sums = [0.0f32; LANES];
    let mut exp_chunk = |x: &mut [f32]| {
        for (x, s) in x.iter_mut().zip(sums.iter_mut()) {
            *x = exp(*x - max);
            *s += *x;
        }
    };
    for x in head.chunks_exact_mut(LANES) {
        exp_chunk(x);
    }
    exp_chunk(&mut tail);
    let inverse = 1.0 / fold_halves(sums, |a, b| a + b);
    for x in head.iter_mut() {
        *x *= inverse;
    }
    for (x, &t) in rest.iter_mut().zip(&tail) {
        *x = t * inverse;
    }
}

/// `f` over the lanes (a power of two), folded in halves: four vector steps for 16 lanes, where
/// a left-to-right fold is a chain of 15 scalar ones (as long as the rest of a short attention
/// row's softmax).
#[inline(always)]
fn fold_halves<const LANES: usize>(mut lanes: [f32; LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = lanes.len();
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] = f(lanes[i], lanes[i + width]);
        }
    }
    lanes[0]
}

/// The least and the greatest of `values` and `init`, NaNs ignored (as `f32::min` and
/// `f32::max` ignore them), in 32 independent lanes: plain comparisons, which vectorize into
/// one instruction each where `f32::min` needs three.
#[inline(always)]
#[allow(clippy::manual_clamp)]
fn min_max_lanes(values: &[f32], init: f32) -> (f32, f32) {
    const LANES: usize = 32;
    let (mut low, mut high) = ([init; LANES], [init; LANES]);
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for ((low, high), &v) in low.iter_mut().zip(high.iter_mut()).zip(chunk) {
            *low = if v < *low { v } else { *low };
            *high = if v > *high { v } else { *high };
        }
    }
    // The lanes folded in halves (a few vector instructions), then the remainder.
    let mut min = fold_halves(low, |a, b| if b < a { b } else { a });
    let mut max = fold_halves(high, |a, b| if b > a { b } else { a });
    for &v in rest {
        min = if v < min { v } else { min };
        max = if v > max { v } else { max };
    }
    (min, max)
}

/// Folds `values` with `f` in eight independent lanes, then folds the lanes.
#[inline(always)]
fn fold_lanes(values: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    const LANES: usize = 8;
    let mut lanes = [init; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder().iter().fold(init, |acc, &v| f(acc, v));
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, v);
        }
    }
    lanes.into_iter().fold(rest, f)
}

/// Compiles `$body` (a call of the `#[inline(always)]` functions above) twice more, with
/// AVX2 and with AVX-512 enabled, and picks a copy at run time: the 512-bit one where the
/// f32 products use 512-bit kernels (chosen per CPU family, or forced), else the AVX2 one
/// where the CPU has AVX2 and FMA.
macro_rules! with_simd {
    ($name:ident($($arg:ident: $ty:ty),*) $body:block) => {{
        #[cfg(target_arch = "x86_64")]
        if $crate::model::kernels::F32Kernel::current() == $crate::model::kernels::F32Kernel::Avx512 {
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn $name($($arg: $ty),*) $body
            // SAFETY: the 512-bit kernels are chosen only where the CPU has AVX-512 F, AVX2
            // and FMA (`F32Kernel::is_available`).
            unsafe { $name($($arg),*) }
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            #[target_feature(enable = "avx2,fma")]
            fn $name($($arg: $ty),*) $body
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { $name($($arg),*) }
        } else {
            $body
        }
        #[cfg(not(target_arch = "x86_64"))]
        $body
    }};
}

mod amx;
mod attention;
mod bf16;
mod bf16_pairs;
mod block;
mod cpu;
mod int8;
mod layer_norm;
mod linear;
mod matmul;
mod residual;

pub use attention::{attention, attention_packed};
pub use bf16::{has_fast_bf16_kernel, Bf16Dense, Bf16Kernel};
pub use block::{encoder_block, Affine, BlockDropout, BlockParams, ParamGrads};
pub use cpu::{CpuId, Vendor};
pub use int8::{has_fast_int8_kernel, Int8Chain, Int8Dense};
pub use layer_norm::{add_layer_norm, layer_norm};
pub use linear::{linear, linear_gelu};
pub use matmul::F32Kernel;
pub use residual::dropout_add;

/// Groups of column blocks per block of rows for a tile product's tasks: enough tasks for the
/// threads when there are few row blocks (the columns are split too), at most one per column
/// block.
fn column_groups(row_blocks: usize, column_blocks: usize) -> usize {
    (2 * rayon::current_num_threads())
        .div_ceil(row_blocks.max(1))
        .clamp(1, column_blocks.max(1))
}

/// Elements per task when an element-wise map is split across threads.
const CHUNK: usize = 1 << 15;

/// The values of a contiguous f32 tensor on the CPU (what a `CustomOp`'s `cpu_fwd` is given).
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("expected f32, got {:?}", storage.dtype())
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("expected a contiguous tensor")
    };
    Ok(&data[start..end])
}

/// [`contiguous_f32`] for any storage (as `storage_and_layout` gives it); `None` for a tensor
/// that is not a contiguous CPU f32 one.
pub(crate) fn cpu_f32<'a>(storage: &'a Storage, layout: &Layout) -> Option<&'a [f32]> {
    match storage {
        Storage::Cpu(cpu) => contiguous_f32(cpu, layout).ok(),
        _ => None,
    }
}

/// [`cpu_f32`] for a kernel's backward pass, whose tensors are its own CPU f32 ones.
fn kernel_values<'a>(storage: &'a Storage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    match storage {
        Storage::Cpu(cpu) => contiguous_f32(cpu, layout),
        _ => candle_core::bail!("expected a CPU tensor"),
    }
}

/// Σ over the rows of `values` (rows of `width`), in fixed chunks summed in order so that
/// the result does not depend on how rayon schedules them.
fn column_sums(values: &[f32], width: usize) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = values
        .par_chunks(width * rows_per_task(width))
        .map(|rows| {
            let mut sums = vec![0.0; width];
            for row in rows.chunks(width) {
                sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            sums
        })
        .collect();
    sum_in_order(partials.iter().map(Vec::as_slice), width)
}

/// The element-wise Σ of `width`-long partial sums, added in the order given: a fixed order,
/// so the result does not depend on how rayon scheduled the tasks that made them.
fn sum_in_order<'a>(partials: impl IntoIterator<Item = &'a [f32]>, width: usize) -> Vec<f32> {
    let mut sums = vec![0.0; width];
    for partial in partials {
        sums.iter_mut().zip(partial).for_each(|(s, v)| *s += v);
    }
    sums
}

/// The forward pass of an element-wise op: `kernel` over chunks of the input, in parallel.
fn map_storage(
    storage: &CpuStorage,
    layout: &Layout,
    kernel: fn(&[f32], &mut [f32]),
) -> candle_core::Result<(CpuStorage, Shape)> {
    let src = contiguous_f32(storage, layout)?;
    Ok((
        CpuStorage::F32(map_values(src, kernel)),
        layout.shape().clone(),
    ))
}

/// `kernel` over chunks of `src`, in parallel.
fn map_values(src: &[f32], kernel: fn(&[f32], &mut [f32])) -> Vec<f32> {
    // Each chunk is zeroed by the task that then writes it, rather than all of it by one
    // thread before the tasks start.
    let mut dst = Vec::with_capacity(src.len());
    dst.spare_capacity_mut()[..src.len()]
        .par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| kernel(s, zeroed(d)));
    // SAFETY: every element was written (zeroed, then by `kernel`) above.
    unsafe { dst.set_len(src.len()) };
    dst
}

/// GELU of `values` (rows of `width`) in place, in parallel.
fn gelu_rows_in_place(values: &mut [f32], width: usize) {
    values
        .par_chunks_mut(width * rows_per_task(width))
        .for_each(|rows| with_simd!(gelu_rows(rows: &mut [f32]) { gelu_in_place(rows) }));
}

/// `slots` set to zero, as the initialized slice they now are.
fn zeroed(slots: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    for slot in slots.iter_mut() {
        slot.write(0.0);
    }
    // SAFETY: every element was just written; `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(slots as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
}

/// GELU of `values` in place; inlined into its caller (and so vectorized with the caller's
/// target features).
#[inline(always)]
fn gelu_in_place(values: &mut [f32]) {
    for x in values.iter_mut() {
        *x = gelu(*x);
    }
}

fn gelu_kernel(src: &[f32], dst: &mut [f32]) {
    with_simd!(gelu_avx2(src: &[f32], dst: &mut [f32]) { gelu_rows(src, dst) })
}

fn gelu_derivative_kernel(src: &[f32], dst: &mut [f32]) {
    with_simd!(gelu_derivative_avx2(src: &[f32], dst: &mut [f32]) {
        gelu_derivative_rows(src, dst)
    })
}

/// Softmax of each `seq`-long row of `scores`, in place (see [`masked_softmax_row`]), with
/// one `mask` for every row (`seq` values) or a mask row per row (as many values as `scores`).
fn softmax_rows(scores: &mut [f32], scale: f32, mask: &[f32], seq: usize) {
    with_simd!(softmax_rows_avx2(scores: &mut [f32], scale: f32, mask: &[f32], seq: usize) {
        let per_row = mask.len() == scores.len();
        for (index, row) in scores.chunks_mut(seq).enumerate() {
            let mask = if per_row { &mask[index * seq..][..seq] } else { mask };
            masked_softmax_row(row, scale, mask)
        }
    })
}

/// `cpu_fwd` of a dense layer op: `forward` over the input's rows, whose last dimension must
/// be `inputs` and becomes `outputs`.
fn dense_cpu_fwd(
    name: &str,
    storage: &CpuStorage,
    layout: &Layout,
    (inputs, outputs): (usize, usize),
    forward: impl FnOnce(&[f32]) -> Vec<f32>,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let x = contiguous_f32(storage, layout)?;
    let mut dims = layout.shape().dims().to_vec();
    match dims.last_mut() {
        Some(width) if *width == inputs => *width = outputs,
        _ => candle_core::bail!("{name}: input {dims:?}, expected width {inputs}"),
    }
    Ok((CpuStorage::F32(forward(x)), Shape::from(dims)))
}

/// Runs `work`, which computes on `device`, on a thread of rayon's pool where the device is
/// the CPU. Called from a thread outside the pool, every parallel kernel is handed over to the
/// pool and its caller put to sleep and woken again: thousands of wake-ups a second, and a
/// third thread preempting the two that compute on a 2-core machine. From inside the pool
/// the caller computes its own share. A GPU's work stays on the calling thread, which holds
/// the device's context.
pub fn on_kernel_threads<R: Send>(device: &Device, work: impl FnOnce() -> R + Send) -> R {
    if device.is_cpu() {
        rayon::scope(|_| work())
    } else {
        work()
    }
}

/// Whether `x` is where these kernels run: an f32 tensor on the CPU.
pub fn uses_cpu_kernels(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        map_storage(storage, layout, gelu_kernel)
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let derivative = arg.contiguous()?.apply_op1_no_bwd(&GeluDerivative)?;
        Ok(Some(grad_res.mul(&derivative)?))
    }
}

struct GeluDerivative;

impl CustomOp1 for GeluDerivative {
    fn name(&self) -> &'static str {
        "gelu-erf-derivative"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        map_storage(storage, layout, gelu_derivative_kernel)
    }
}

/// GELU with the exact-erf definition, differentiable.
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    if uses_cpu_kernels(x) {
        x.contiguous()?.apply_op1(Gelu)
    } else {
        x.gelu_erf()
    }
}

/// Rows per task when a row-wise op is split across threads.
fn rows_per_task(width: usize) -> usize {
    (CHUNK / width.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The work runs on a thread of the pool, from a thread outside it or inside it, and its
    /// result comes back.
    #[test]
    fn on_kernel_threads_runs_the_work_in_the_pool() {
        assert_eq!(rayon::current_thread_index(), None);
        let cpu = &Device::Cpu;
        let (index, nested) = on_kernel_threads(cpu, || {
            (
                rayon::current_thread_index(),
                on_kernel_threads(cpu, rayon::current_thread_index),
            )
        });
        assert!(index.is_some());
        assert_eq!(nested, index);
    }

    use crate::testing::max_abs_diff;
    use candle_core::{Device, Var, D};

    #[test]
    fn min_max_lanes_is_f32_min_and_max_with_nans_ignored() {
        let mut rng = crate::rng::Rng::new(3);
        for len in 0..100 {
            let mut row: Vec<f32> = (0..len).map(|_| rng.normal() * 10.0).collect();
            if len % 7 == 3 {
                row[len / 2] = f32::NAN;
            }
            for init in [0.0, f32::NEG_INFINITY] {
                let expected = (
                    row.iter().fold(init, |a, &b| a.min(b)),
                    row.iter().fold(init, |a, &b| a.max(b)),
                );
                assert_eq!(min_max_lanes(&row, init), expected, "{len} values: {row:?}");
            }
        }
    }

    /// The sum and LayerNorm in one pass against the two ops, bit for bit: widths that are
    /// and are not whole vectors, rows across parallel tasks; and refused on a tensor that
    /// tracks a gradient.
    #[test]
    fn add_layer_norm_is_the_sum_then_layer_norm() {
        let mut rng = crate::rng::Rng::new(5);
        let mut tensor = |rows: usize, width: usize, scale: f32| {
            let values: Vec<f32> = (0..rows * width).map(|_| rng.normal() * scale).collect();
            Tensor::from_vec(values, (rows, width), &Device::Cpu).unwrap()
        };
        for (rows, width) in [(1, 1), (3, 7), (70, 384), (2_000, 384), (5, 1_000)] {
            let (y, residual) = (tensor(rows, width, 3.0), tensor(rows, width, 1.0));
            let weight = tensor(1, width, 1.0).flatten_all().unwrap();
            let bias = tensor(1, width, 0.5).flatten_all().unwrap();
            let fused = add_layer_norm(&y, &residual, &weight, &bias, 1e-12).unwrap();
            let sum = dropout_add(&y, &residual, None).unwrap();
            let expected = layer_norm(&sum, &weight, &bias, 1e-12).unwrap();
            let (fused, expected): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
                (fused.to_vec2().unwrap(), expected.to_vec2().unwrap());
            assert!(fused == expected, "{rows}×{width}");
        }
        let tracked = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let other = Tensor::new(&[0.5f32, 1.0], &Device::Cpu).unwrap();
        assert!(add_layer_norm(tracked.as_tensor(), &other, &other, &other, 1e-12).is_err());
    }

    #[test]
    fn exp_is_within_one_ulp_or_so() {
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let exact = (x as f64).exp();
            let relative = ((exp(x) as f64 - exact) / exact).abs();
            assert!(relative < 2e-7, "exp({x}) = {} vs {exact}", exp(x));
        }
        assert_eq!(exp(-1e9), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn gelu_and_its_gradient_match_candles() {
        let xs: Vec<f32> = (-120_000..=120_000).map(|i| i as f32 * 1e-4).collect();
        let var = Var::new(xs.as_slice(), &Device::Cpu).unwrap();
        let x = var.as_tensor();
        let fast = gelu_erf(x).unwrap();
        let exact = x.gelu_erf().unwrap();
        let values: Vec<f32> = fast.to_vec1().unwrap();
        let expected: Vec<f32> = exact.to_vec1().unwrap();
        for ((x, f), e) in xs.iter().zip(&values).zip(&expected) {
            assert!(
                (f - e).abs() <= 1e-6 * x.abs().max(1.0),
                "x = {x}: {f} vs {e}"
            );
        }
        let fast_grad = fast.sum_all().unwrap().backward().unwrap();
        let exact_grad = exact.sum_all().unwrap().backward().unwrap();
        let diff = max_abs_diff(fast_grad.get(x).unwrap(), exact_grad.get(x).unwrap());
        assert!(diff < 2e-6, "gradient differs by {diff}");
    }

    fn random_var(shape: impl Into<candle_core::Shape>) -> Var {
        Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// `fast` equals `plain` within `tolerance`, and so does the gradient of a random linear
    /// function of each with respect to every one of `vars`.
    fn assert_same_with_gradients(fast: &Tensor, plain: &Tensor, vars: &[&Var], tolerance: f32) {
        let diff = max_abs_diff(fast, plain);
        assert!(diff < tolerance, "values differ by {diff}");
        let weights = Tensor::randn(0f32, 1.0, fast.shape(), &Device::Cpu).unwrap();
        let loss = |y: &Tensor| (y * &weights).unwrap().sum_all().unwrap();
        let fast_grads = loss(fast).backward().unwrap();
        let plain_grads = loss(plain).backward().unwrap();
        for (index, var) in vars.iter().enumerate() {
            let (f, p) = (fast_grads.get(var).unwrap(), plain_grads.get(var).unwrap());
            let diff = max_abs_diff(f, p);
            assert!(diff < tolerance, "gradient {index} differs by {diff}");
        }
    }

    #[test]
    fn linear_matches_candles_ops_with_gradients() {
        let (x, w, b) = (random_var((3, 5, 8)), random_var((6, 8)), random_var(6));
        let fast = linear(&x, &w, &b).unwrap();
        let plain = x
            .broadcast_matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        assert_eq!(fast.dims(), &[3, 5, 6]);
        assert_same_with_gradients(&fast, &plain, &[&x, &w, &b], 1e-5);
    }

    #[test]
    fn layer_norm_matches_candles_ops_with_gradients() {
        let (x, w, b) = (random_var((4, 7, 37)), random_var(37), random_var(37));
        let x_shifted = (x.as_tensor() * 3.0).unwrap().affine(1.0, 5.0).unwrap();
        let fast = layer_norm(&x_shifted, &w, &b, 1e-12).unwrap();
        let mean = x_shifted.mean_keepdim(D::Minus1).unwrap();
        let centered = x_shifted.broadcast_sub(&mean).unwrap();
        let variance = centered.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let plain = centered
            .broadcast_div(&(variance + 1e-12).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&w)
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        assert_same_with_gradients(&fast, &plain, &[&x, &w, &b], 2e-5);
        let fused = candle_nn::ops::layer_norm(&x_shifted, &w, &b, 1e-12).unwrap();
        assert!(max_abs_diff(&fast, &fused) < 2e-5);
    }

    #[test]
    fn attention_matches_candles_ops_with_gradients() {
        let (batch, heads, seq, head_dim) = (3, 4, 9, 8);
        let hidden = heads * head_dim;
        let (q, k, v) = (
            random_var((batch, seq, hidden)),
            random_var((batch, seq, hidden)),
            random_var((batch, seq, hidden)),
        );
        let mut per_key = vec![0f32; batch * seq];
        per_key[seq - 3..seq].fill(-1e9);
        let per_key = Tensor::from_vec(per_key, (batch, 1, 1, seq), &Device::Cpu).unwrap();
        let mut rng = crate::rng::Rng::new(7);
        // Each query row its own keys (always itself among them).
        let per_query: Vec<f32> = (0..batch * seq * seq)
            .map(|i| {
                let (query, key) = (i / seq % seq, i % seq);
                if query == key || rng.next_f32() < 0.5 {
                    0.0
                } else {
                    -1e9
                }
            })
            .collect();
        let per_query = Tensor::from_vec(per_query, (batch, 1, seq, seq), &Device::Cpu).unwrap();
        let factors: Vec<f32> = (0..batch * heads * seq * seq)
            .map(|_| if rng.next_f32() < 0.8 { 1.25 } else { 0.0 })
            .collect();
        // A bias per head, query and key (MPNet's position bias), shared by the sequences or
        // with each sequence's mask in it.
        let per_head = random_var((1, heads, seq, seq)).as_tensor().clone();
        let per_head_masked = per_head.broadcast_add(&per_query).unwrap();
        let cases = [
            (&per_key, None),
            (&per_key, Some(factors.clone())),
            (&per_query, None),
            (&per_query, Some(factors.clone())),
            (&per_head, None),
            (&per_head_masked, Some(factors)),
        ];
        // q, k and v side by side in each row, as one product over the three layers gives them.
        let packed = Tensor::cat(&[q.as_tensor(), k.as_tensor(), v.as_tensor()], 2).unwrap();
        for (mask, dropout) in cases {
            let fast = attention((&q, &k, &v), heads, 0.25, mask, dropout.clone()).unwrap();
            if dropout.is_none() {
                let from_packed = attention_packed(&packed, heads, 0.25, mask).unwrap();
                assert_eq!(
                    from_packed.to_vec3::<f32>().unwrap(),
                    fast.to_vec3::<f32>().unwrap()
                );
            }
            let plain = candle_attention((&q, &k, &v), heads, 0.25, mask, dropout);
            assert_same_with_gradients(&fast, &plain, &[&q, &k, &v], 1e-5);
        }
        let not_three = Tensor::zeros((batch, seq, 3 * hidden + 1), DType::F32, &Device::Cpu);
        assert!(attention_packed(&not_three.unwrap(), heads, 0.25, &per_key).is_err());
    }

    /// Attention from candle's ops (as `model::bert` runs it off the CPU), differentiable in
    /// everything, the bias included.
    fn candle_attention(
        (q, k, v): (&Tensor, &Tensor, &Tensor),
        heads: usize,
        scale: f64,
        bias: &Tensor,
        dropout: Option<Vec<f32>>,
    ) -> Tensor {
        let (batch, seq, hidden) = q.dims3().unwrap();
        let split = |t: &Tensor| {
            t.reshape((batch, seq, heads, hidden / heads))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let scores = (split(q).matmul(&split(k).t().unwrap()).unwrap() * scale)
            .unwrap()
            .broadcast_add(bias)
            .unwrap();
        let mut probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        if let Some(factors) = dropout {
            let factors = Tensor::from_vec(factors, probs.shape(), &Device::Cpu).unwrap();
            probs = probs.mul(&factors).unwrap();
        }
        probs
            .matmul(&split(v))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((batch, seq, hidden))
            .unwrap()
    }

    #[test]
    fn dropout_add_matches_candles_ops_with_gradients() {
        let (y, residual) = (random_var((3, 5, 8)), random_var((3, 5, 8)));
        let factors: Vec<f32> = (0..120).map(|i| [0.0, 1.25][i % 3 / 2]).collect();
        let mask = Tensor::from_vec(factors.clone(), (3, 5, 8), &Device::Cpu).unwrap();
        let plain = (y.mul(&mask).unwrap() + residual.as_tensor()).unwrap();
        let fast = dropout_add(&y, &residual, Some(factors)).unwrap();
        assert_same_with_gradients(&fast, &plain, &[&y, &residual], 1e-6);
        let plain = (y.as_tensor() + residual.as_tensor()).unwrap();
        let fast = dropout_add(&y, &residual, None).unwrap();
        assert_same_with_gradients(&fast, &plain, &[&y, &residual], 1e-6);
    }

    #[test]
    fn encoder_block_matches_the_per_op_kernels_with_gradients() {
        let (batch, seq) = (2, 5);
        let mut per_key = vec![0f32; batch * seq];
        per_key[2 * seq - 2..].fill(-1e9);
        let per_key = Tensor::from_vec(per_key, (batch, seq), &Device::Cpu).unwrap();
        // Lower-triangular: each query sees itself and the keys before it.
        let per_query: Vec<f32> = (0..batch * seq * seq)
            .map(|i| if i % seq <= i / seq % seq { 0.0 } else { -1e9 })
            .collect();
        let per_query = Tensor::from_vec(per_query, (batch, seq, seq), &Device::Cpu).unwrap();
        for mask in [per_key, per_query] {
            encoder_block_matches_with_mask(&mask, None);
        }
    }

    /// With a trained bias (MPNet's relative position bias, shared by the sequences), alone
    /// and with a mask per sequence in it: the block gives the bias its gradient.
    #[test]
    fn encoder_block_gives_a_trained_bias_its_gradient() {
        let (batch, seq, heads) = (2, 5, 4);
        let mut per_key = vec![0f32; batch * seq];
        per_key[2 * seq - 2..].fill(-1e9);
        let per_key = Tensor::from_vec(per_key, (batch, 1, 1, seq), &Device::Cpu).unwrap();
        for masked in [false, true] {
            let position_bias = random_var((1, heads, seq, seq));
            let bias = match masked {
                false => position_bias.as_tensor().clone(),
                true => position_bias.broadcast_add(&per_key).unwrap(),
            };
            encoder_block_matches_with_mask(&bias, Some(&position_bias));
        }
    }

    /// `trained_bias`: the variable `mask` is made from, whose gradients must agree too.
    fn encoder_block_matches_with_mask(mask: &Tensor, trained_bias: Option<&Var>) {
        let (batch, seq, hidden, heads, inner) = (2, 5, 16, 4, 32);
        let x = random_var((batch, seq, hidden));
        let shapes = [
            (hidden, hidden),
            (hidden, hidden),
            (hidden, hidden),
            (hidden, hidden),
            (0, hidden),
            (inner, hidden),
            (hidden, inner),
            (0, hidden),
        ];
        let affines: Vec<(Var, Var)> = shapes
            .iter()
            .map(|&(outputs, inputs)| match outputs {
                0 => (random_var(inputs), random_var(inputs)),
                _ => (random_var((outputs, inputs)), random_var(outputs)),
            })
            .collect();
        let affine = |i: usize| Affine {
            weight: affines[i].0.as_tensor().clone(),
            bias: affines[i].1.as_tensor().clone(),
        };
        let mut rng = crate::rng::Rng::new(5);
        let mut factors = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| if rng.next_f32() < 0.8 { 1.25 } else { 0.0 })
                .collect()
        };
        let dropout = BlockDropout {
            attention: Some(factors(batch * heads * seq * seq)),
            attention_output: Some(factors(batch * seq * hidden)),
            output: Some(factors(batch * seq * hidden)),
        };
        let eps = 1e-12;
        let params = BlockParams {
            query: affine(0),
            key: affine(1),
            value: affine(2),
            attention_output: affine(3),
            attention_norm: affine(4),
            intermediate: affine(5),
            output: affine(6),
            output_norm: affine(7),
            heads,
            eps: eps as f32,
        };
        let block_grads = ParamGrads::default();
        let fused = encoder_block(
            &x,
            params,
            mask,
            BlockDropout {
                attention: dropout.attention.clone(),
                attention_output: dropout.attention_output.clone(),
                output: dropout.output.clone(),
            },
            &block_grads,
        )
        .unwrap();

        let dense = |i: usize, input: &Tensor| {
            linear(input, affines[i].0.as_tensor(), affines[i].1.as_tensor()).unwrap()
        };
        let norm = |i: usize, input: &Tensor| {
            layer_norm(
                input,
                affines[i].0.as_tensor(),
                affines[i].1.as_tensor(),
                eps,
            )
            .unwrap()
        };
        let (q, k, v) = (dense(0, &x), dense(1, &x), dense(2, &x));
        let scale = (1.0 / ((hidden / heads) as f64).sqrt()) as f32;
        let context = match trained_bias {
            None => attention((&q, &k, &v), heads, scale, mask, dropout.attention).unwrap(),
            Some(_) => candle_attention((&q, &k, &v), heads, scale.into(), mask, dropout.attention),
        };
        let attention_sum = dropout_add(&dense(3, &context), &x, dropout.attention_output).unwrap();
        let attended = norm(4, &attention_sum);
        let output = dense(6, &gelu_erf(&dense(5, &attended)).unwrap());
        let plain = norm(7, &dropout_add(&output, &attended, dropout.output).unwrap());

        assert!(max_abs_diff(&fused, &plain) < 1e-5);
        let weights = Tensor::randn(0f32, 1.0, fused.shape(), &Device::Cpu).unwrap();
        let loss = |y: &Tensor| (y * &weights).unwrap().sum_all().unwrap();
        let mut fused_grads = loss(&fused).backward().unwrap();
        block_grads.merge_into(&mut fused_grads).unwrap();
        let plain_grads = loss(&plain).backward().unwrap();
        let vars = std::iter::once(&x)
            .chain(affines.iter().flat_map(|(w, b)| [w, b]))
            .chain(trained_bias);
        for (index, var) in vars.enumerate() {
            let (f, p) = (fused_grads.get(var).unwrap(), plain_grads.get(var).unwrap());
            let diff = max_abs_diff(f, p);
            assert!(diff < 1e-4, "gradient {index} differs by {diff}");
        }
    }

    #[test]
    fn gelu_keeps_shape_and_handles_views() {
        let x = Tensor::arange(-8f32, 8.0, &Device::Cpu)
            .unwrap()
            .reshape((4, 4))
            .unwrap()
            .t()
            .unwrap();
        let fast = gelu_erf(&x).unwrap();
        assert_eq!(fast.dims(), &[4, 4]);
        assert!(max_abs_diff(&fast, &x.gelu_erf().unwrap()) < 1e-5);
    }
}

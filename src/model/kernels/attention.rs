//! Multi-head scaled dot-product attention on q, k, v in the layout the dense layers give,
//! [batch, seq, heads·head_dim], with an additive bias per key (padding), per query and key
//! (which token may see which) or per head, query and key (MPNet's relative position bias
//! with the mask), and optional dropout on the probabilities. One parallel task per (sequence, head), each with single-threaded products
//! (candle's batched matmul would synchronise its threads once per head for two small
//! products). The backward pass recomputes the probabilities rather than keeping them.
//! Inference runs it in f32 at every precision: with bf16 dense layers, bf16 attention on the
//! tile unit measured slower than this (2026-12-07, BENCHMARKS.md).

use super::matmul::{matmul, Matrix, MatrixMut, SharedOutput, Threads};
use super::{contiguous_f32, kernel_values, softmax_rows, uses_cpu_kernels};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The additive bias of the attention scores, [sequences, heads, queries, seq] values, where
/// each of the first three is either 1 (the same for every sequence, head or query) or the
/// attention's own count.
pub(super) struct Bias {
    pub values: Vec<f32>,
    pub sequences: usize,
    pub heads: usize,
    pub queries: usize,
}

impl Bias {
    /// From a bias tensor [batch, seq] (per key), [batch, queries, seq] (per query and key) or
    /// [sequences, heads, queries, seq].
    pub fn from_tensor(bias: &Tensor) -> candle_core::Result<Self> {
        let (sequences, heads, queries) = match *bias.dims() {
            [batch, _] => (batch, 1, 1),
            [batch, queries, _] => (batch, 1, queries),
            [sequences, heads, queries, _] => (sequences, heads, queries),
            ref dims => candle_core::bail!("attention: a bias of shape {dims:?}"),
        };
        Ok(Self {
            values: bias.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
            sequences,
            heads,
            queries,
        })
    }
}

pub(super) struct Attention {
    pub heads: usize,
    pub scale: f32,
    /// Added to the scores before the softmax.
    pub bias: Bias,
    /// [batch, heads, seq, seq]: the factor each probability is multiplied by (0 or 1/keep).
    pub dropout: Option<Vec<f32>>,
}

/// Where one (sequence, head) block lives in the key and value buffers ([batch, seq] rows),
/// the query buffer ([batch, queries] rows), each `stride` values apart, and the context
/// buffer ([batch, queries, hidden]).
#[derive(Clone, Copy)]
struct Block {
    index: usize,
    offset: usize,
    seq: usize,
    query_offset: usize,
    context_offset: usize,
    queries: usize,
    head_dim: usize,
    hidden: usize,
    /// `hidden` for separate q, k and v; 3 · `hidden` for q, k, v side by side in each row.
    stride: usize,
    /// The block's bias in `Attention::bias`: `seq` values shared by every query, or
    /// `queries · seq`, one row per query.
    mask_offset: usize,
    mask_len: usize,
}

impl Attention {
    /// The blocks for keys and values of `shape` [batch, seq, hidden] and `queries` query
    /// rows per sequence, the rows of q, k and v `stride` values apart.
    fn blocks(
        &self,
        shape: &Shape,
        queries: usize,
        stride: usize,
    ) -> candle_core::Result<Vec<Block>> {
        let (batch, seq, hidden) = shape.dims3()?;
        if !hidden.is_multiple_of(self.heads) {
            candle_core::bail!(
                "attention: width {hidden} is not a multiple of {} heads",
                self.heads
            );
        }
        let bias = &self.bias;
        let fits = |dim: usize, full: usize| dim == 1 || dim == full;
        if !fits(bias.sequences, batch)
            || !fits(bias.heads, self.heads)
            || !fits(bias.queries, queries)
            || bias.values.len() != bias.sequences * bias.heads * bias.queries * seq
        {
            candle_core::bail!(
                "attention: a bias of {} values as {}×{}×{}×{seq} for {batch} sequences, {} heads, \
                 {queries} queries and {seq} keys",
                bias.values.len(),
                bias.sequences,
                bias.heads,
                bias.queries,
                self.heads
            );
        }
        let mask_len = bias.queries * seq;
        if let Some(dropout) = &self.dropout {
            if dropout.len() != batch * self.heads * queries * seq {
                candle_core::bail!("attention: dropout mask has {} values", dropout.len());
            }
        }
        let head_dim = hidden / self.heads;
        Ok((0..batch * self.heads)
            .map(|index| {
                let (sequence, head) = (index / self.heads, index % self.heads);
                Block {
                    index,
                    offset: sequence * seq * stride + head * head_dim,
                    seq,
                    query_offset: sequence * queries * stride + head * head_dim,
                    context_offset: sequence * queries * hidden + head * head_dim,
                    queries,
                    head_dim,
                    hidden,
                    stride,
                    mask_offset: (sequence % bias.sequences * bias.heads + head % bias.heads)
                        * mask_len,
                    mask_len,
                }
            })
            .collect())
    }

    /// The block's head in a key, value or gradient buffer ([batch, seq, hidden]).
    fn head(data: &[f32], block: Block) -> Matrix<'_> {
        Self::head_at(data, block, block.offset, block.seq)
    }

    /// The block's head in the query buffer ([batch, queries, hidden]).
    fn query_head(data: &[f32], block: Block) -> Matrix<'_> {
        Self::head_at(data, block, block.query_offset, block.queries)
    }

    fn head_at(data: &[f32], block: Block, offset: usize, rows: usize) -> Matrix<'_> {
        Matrix::rows(data, offset, (rows, block.head_dim), block.stride)
    }

    /// The attention probabilities of one block, before dropout, into `probs` (queries·seq).
    fn probabilities(&self, q: &[f32], k: &[f32], block: Block, probs: &mut [f32]) {
        let seq = block.seq;
        matmul(
            MatrixMut::rows(probs, 0, (block.queries, seq), seq),
            Self::query_head(q, block),
            Self::head(k, block).t(),
            false,
            Threads::One,
        );
        let mask = &self.bias.values[block.mask_offset..][..block.mask_len];
        softmax_rows(probs, self.scale, mask, seq);
    }

    /// The context [batch, seq, hidden] for q, k, v of `shape` [batch, seq, hidden], and
    /// with `keep_probs` the probabilities before dropout, [batch, heads, seq, seq], for
    /// [`Attention::backward`].
    pub fn forward(
        &self,
        shape: &Shape,
        qkv: (&[f32], &[f32], &[f32]),
        keep_probs: bool,
    ) -> candle_core::Result<(Vec<f32>, Option<Vec<f32>>)> {
        let (_, seq, hidden) = shape.dims3()?;
        self.forward_queries(shape, seq, qkv, hidden, keep_probs)
    }

    /// [`Attention::forward`] for `queries` query rows per sequence (q and the context
    /// [batch, queries, hidden]); k and v are of `shape` [batch, seq, hidden]. The rows of q,
    /// k and v are `stride` values apart.
    fn forward_queries(
        &self,
        shape: &Shape,
        queries: usize,
        (q, k, v): (&[f32], &[f32], &[f32]),
        stride: usize,
        keep_probs: bool,
    ) -> candle_core::Result<(Vec<f32>, Option<Vec<f32>>)> {
        let blocks = self.blocks(shape, queries, stride)?;
        let (batch, _, hidden) = shape.dims3()?;
        let mut context = vec![0.0; batch * queries * hidden];
        let output = SharedOutput::new(&mut context);
        let attend = |probs: &mut [f32], dropped: &mut Vec<f32>, block: Block| {
            let (seq, queries) = (block.seq, block.queries);
            self.probabilities(q, k, block, probs);
            let probs: &[f32] = match self.dropout_factors(block) {
                Some(factors) => {
                    dropped.clear();
                    dropped.extend(probs.iter().zip(factors).map(|(p, f)| p * f));
                    dropped
                }
                None => probs,
            };
            // SAFETY: each block writes its own head's columns of its own sequence.
            let out = unsafe {
                output.view(
                    block.context_offset,
                    (queries, block.head_dim),
                    block.hidden,
                )
            };
            matmul(
                out,
                Matrix::rows(probs, 0, (queries, seq), seq),
                Self::head(v, block),
                false,
                Threads::One,
            );
        };
        let Some(&Block { seq, .. }) = blocks.first() else {
            return Ok((context, keep_probs.then(Vec::new)));
        };
        if keep_probs {
            let mut all_probs = vec![0.0; blocks.len() * queries * seq];
            all_probs
                .par_chunks_mut(queries * seq)
                .zip(blocks.par_iter())
                .for_each_init(Vec::new, |dropped, (probs, &block)| {
                    attend(probs, dropped, block)
                });
            return Ok((context, Some(all_probs)));
        }
        blocks.par_iter().for_each_init(
            || (vec![0.0; queries * seq], Vec::new()),
            |(probs, dropped), &block| attend(probs, dropped, block),
        );
        Ok((context, None))
    }

    /// (dq, dk, dv) for the context gradient `grad_values`; `saved_probs` from
    /// [`Attention::forward`], recomputed when `None`. With `bias_grad`, also the gradient of
    /// the scores' bias, [batch, heads, seq, seq] (whatever the bias's own shape).
    pub fn backward(
        &self,
        shape: &Shape,
        (q_values, k_values, v_values): (&[f32], &[f32], &[f32]),
        saved_probs: Option<&[f32]>,
        grad_values: &[f32],
        bias_grad: bool,
    ) -> candle_core::Result<AttentionGrads> {
        let (_, seq, hidden) = shape.dims3()?;
        let blocks = self.blocks(shape, seq, hidden)?;
        let len = q_values.len();
        let (mut dq, mut dk, mut dv) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
        let outputs = [&mut dq, &mut dk, &mut dv].map(|buffer| SharedOutput::new(buffer));
        let mut d_bias = if bias_grad {
            let seq = shape.dims3()?.1;
            vec![0.0; blocks.len() * seq * seq]
        } else {
            Vec::new()
        };
        let d_bias_output = SharedOutput::new(&mut d_bias);
        blocks.par_iter().for_each_init(
            || (Vec::new(), Vec::new()),
            |(probs, dprobs), &block| {
                let (seq, head_dim, hidden) = (block.seq, block.head_dim, block.hidden);
                dprobs.resize(seq * seq, 0.0);
                let probs: &[f32] = match saved_probs {
                    Some(saved) => &saved[block.index * seq * seq..][..seq * seq],
                    None => {
                        probs.resize(seq * seq, 0.0);
                        self.probabilities(q_values, k_values, block, probs);
                        probs
                    }
                };
                let grad_head = Self::head(grad_values, block);
                // SAFETY: each block writes its own head's columns of its own sequence.
                let [dq_head, dk_head, dv_head] = outputs
                    .each_ref()
                    .map(|output| unsafe { output.view(block.offset, (seq, head_dim), hidden) });
                fn square(data: &[f32], seq: usize) -> Matrix<'_> {
                    Matrix::rows(data, 0, (seq, seq), seq)
                }
                let dropout = self.dropout_factors(block);
                // dV = dropped(P)ᵀ·dC, with dprobs as scratch for dropped(P).
                let dropped: &[f32] = match dropout {
                    Some(factors) => {
                        dprobs.copy_from_slice(probs);
                        multiply(dprobs, factors);
                        &dprobs[..]
                    }
                    None => probs,
                };
                matmul(
                    dv_head,
                    square(dropped, seq).t(),
                    grad_head,
                    false,
                    Threads::One,
                );
                // dP = (dC·Vᵀ) ∘ dropout factors.
                matmul(
                    MatrixMut::rows(dprobs, 0, (seq, seq), seq),
                    grad_head,
                    Self::head(v_values, block).t(),
                    false,
                    Threads::One,
                );
                if let Some(factors) = dropout {
                    multiply(dprobs, factors);
                }
                // dS = scale · P ∘ (dP − Σⱼ dPⱼ·Pⱼ), row by row; the bias's gradient is the
                // same without the scale.
                // SAFETY: each block writes its own (sequence, head) slab.
                let mut bias_rows = bias_grad.then(|| unsafe {
                    d_bias_output
                        .slice(block.index * seq * seq, seq * seq)
                        .chunks_mut(seq)
                });
                for (dp_row, p_row) in dprobs.chunks_mut(seq).zip(probs.chunks(seq)) {
                    let dot: f32 = dp_row.iter().zip(p_row).map(|(d, p)| d * p).sum();
                    match bias_rows.as_mut().and_then(|rows| rows.next()) {
                        Some(bias_row) => {
                            for ((d, p), b) in dp_row.iter_mut().zip(p_row).zip(bias_row) {
                                *b = p * (*d - dot);
                                *d = self.scale * *b;
                            }
                        }
                        None => {
                            for (d, p) in dp_row.iter_mut().zip(p_row) {
                                *d = self.scale * p * (*d - dot);
                            }
                        }
                    }
                }
                matmul(
                    dq_head,
                    square(dprobs, seq),
                    Self::head(k_values, block),
                    false,
                    Threads::One,
                );
                matmul(
                    dk_head,
                    square(dprobs, seq).t(),
                    Self::head(q_values, block),
                    false,
                    Threads::One,
                );
            },
        );
        Ok(AttentionGrads {
            q: dq,
            k: dk,
            v: dv,
            bias: bias_grad.then_some(d_bias),
        })
    }

    fn dropout_factors(&self, block: Block) -> Option<&[f32]> {
        let size = block.queries * block.seq;
        self.dropout
            .as_deref()
            .map(|factors| &factors[block.index * size..][..size])
    }
}

/// The gradients of [`Attention::backward`].
pub(super) struct AttentionGrads {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    /// [batch, heads, seq, seq], when asked for.
    pub bias: Option<Vec<f32>>,
}

fn multiply(values: &mut [f32], factors: &[f32]) {
    values.iter_mut().zip(factors).for_each(|(v, f)| *v *= f);
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (batch, queries, hidden) = q_layout.shape().dims3()?;
        let (k_batch, _, k_hidden) = k_layout.shape().dims3()?;
        if k_layout.shape() != v_layout.shape() || (batch, hidden) != (k_batch, k_hidden) {
            candle_core::bail!("attention: q, k and v shapes differ");
        }
        let (q, k, v) = (
            contiguous_f32(q, q_layout)?,
            contiguous_f32(k, k_layout)?,
            contiguous_f32(v, v_layout)?,
        );
        let (context, _) =
            self.forward_queries(k_layout.shape(), queries, (q, k, v), hidden, false)?;
        Ok((CpuStorage::F32(context), q_layout.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _context: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if q.shape() != k.shape() {
            candle_core::bail!("attention: no backward pass for a subset of the queries");
        }
        let grad = grad.contiguous()?;
        let (q_storage, q_layout) = q.storage_and_layout();
        let (k_storage, k_layout) = k.storage_and_layout();
        let (v_storage, v_layout) = v.storage_and_layout();
        let (grad_storage, grad_layout) = grad.storage_and_layout();
        let AttentionGrads {
            q: dq,
            k: dk,
            v: dv,
            ..
        } = self.backward(
            q.shape(),
            (
                kernel_values(&q_storage, q_layout)?,
                kernel_values(&k_storage, k_layout)?,
                kernel_values(&v_storage, v_layout)?,
            ),
            None,
            kernel_values(&grad_storage, grad_layout)?,
            false,
        )?;
        let device = q.device();
        let shape = q.shape();
        Ok((
            Some(Tensor::from_vec(dq, shape, device)?),
            Some(Tensor::from_vec(dk, shape, device)?),
            Some(Tensor::from_vec(dv, shape, device)?),
        ))
    }
}

/// softmax(q·kᵀ·scale + bias)·v per head, differentiable in q, k and v (not in the bias), for
/// CPU f32 q, k, v [batch, seq, heads·head_dim] (heads side by side, as the dense layers give
/// them; see [`uses_cpu_kernels`]) and `bias` [batch, seq], [batch, queries, seq] or [batch or
/// 1, heads or 1, queries or 1, seq] (see [`Bias::from_tensor`]).
/// `dropout`: one factor (0 or 1/keep) per probability, [batch, heads, seq, seq]. In
/// inference q may hold fewer rows per sequence than k and v, [batch, queries, hidden]: the
/// context then has q's shape.
pub fn attention(
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    heads: usize,
    scale: f32,
    bias: &Tensor,
    dropout: Option<Vec<f32>>,
) -> candle_core::Result<Tensor> {
    if !uses_cpu_kernels(q) {
        candle_core::bail!("the attention kernel takes CPU f32 tensors");
    }
    let op = Attention {
        heads,
        scale,
        bias: Bias::from_tensor(bias)?,
        dropout,
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// The attention of one product's output: `qkv` [batch, seq, 3 · hidden], each row q, k and
/// v side by side (heads side by side within each), read where they lie. CPU f32, inference
/// only; otherwise as [`attention`]. The context is [batch, seq, hidden].
pub fn attention_packed(
    qkv: &Tensor,
    heads: usize,
    scale: f32,
    bias: &Tensor,
) -> candle_core::Result<Tensor> {
    if !uses_cpu_kernels(qkv) {
        candle_core::bail!("the attention kernel takes CPU f32 tensors");
    }
    let op = PackedAttention(Attention {
        heads,
        scale,
        bias: Bias::from_tensor(bias)?,
        dropout: None,
    });
    qkv.contiguous()?.apply_op1_no_bwd(&op)
}

struct PackedAttention(Attention);

impl CustomOp1 for PackedAttention {
    fn name(&self) -> &'static str {
        "attention-packed"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (batch, seq, width) = layout.shape().dims3()?;
        if !width.is_multiple_of(3) {
            candle_core::bail!("attention: packed rows of {width} values are not q, k and v");
        }
        let hidden = width / 3;
        let shape = Shape::from((batch, seq, hidden));
        let qkv = contiguous_f32(storage, layout)?;
        let parts = (qkv, &qkv[hidden..], &qkv[2 * hidden..]);
        let (context, _) = self.0.forward_queries(&shape, seq, parts, width, false)?;
        Ok((CpuStorage::F32(context), shape))
    }
}

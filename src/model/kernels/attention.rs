//! Multi-head scaled dot-product attention on q, k, v in the layout the dense layers give,
//! [batch, seq, heads·head_dim], with an additive bias per key (padding), per query and key
//! (which token may see which) or per head, query and key (MPNet's relative position bias
//! with the mask), and optional dropout on the probabilities. One parallel task per (sequence, head), each with single-threaded products
//! (candle's batched matmul would synchronise its threads once per head for two small
//! products). The backward pass recomputes the probabilities rather than keeping them.
//! In inference with `bf16`, q, k, v and the probabilities are rounded to bf16 and the two
//! products run on the AMX tile unit where the CPU has one (the scores and the softmax stay
//! f32).

use super::bf16::{self, attention_on_tiles, BLOCK, DEPTH};
use super::matmul::{matmul, Matrix, MatrixMut, SharedOutput, Threads};
use super::{contiguous_f32, kernel_values, softmax_rows, softmax_rows_to_bf16, uses_cpu_kernels};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
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

    /// One value per key of each sequence, [batch, seq].
    #[cfg(test)]
    pub fn per_key(values: Vec<f32>, batch: usize) -> Self {
        Self {
            values,
            sequences: batch,
            heads: 1,
            queries: 1,
        }
    }
}

pub(super) struct Attention {
    pub heads: usize,
    pub scale: f32,
    /// Added to the scores before the softmax.
    pub bias: Bias,
    /// [batch, heads, seq, seq]: the factor each probability is multiplied by (0 or 1/keep).
    pub dropout: Option<Vec<f32>>,
    /// Inference in bf16 (see the module's comment).
    pub bf16: bool,
}

/// Where one (sequence, head) block lives in the [batch, seq, hidden] key and value buffers
/// and the [batch, queries, hidden] query and context buffers.
#[derive(Clone, Copy)]
struct Block {
    index: usize,
    offset: usize,
    seq: usize,
    query_offset: usize,
    queries: usize,
    head_dim: usize,
    hidden: usize,
    /// The block's bias in `Attention::bias`: `seq` values shared by every query, or
    /// `queries · seq`, one row per query.
    mask_offset: usize,
    mask_len: usize,
}

impl Attention {
    /// The blocks for keys and values of `shape` [batch, seq, hidden] and `queries` query
    /// rows per sequence.
    fn blocks(&self, shape: &Shape, queries: usize) -> candle_core::Result<Vec<Block>> {
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
                    offset: sequence * seq * hidden + head * head_dim,
                    seq,
                    query_offset: sequence * queries * hidden + head * head_dim,
                    queries,
                    head_dim,
                    hidden,
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
        Matrix::rows(data, offset, (rows, block.head_dim), block.hidden)
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
        self.forward_queries(shape, shape.dims3()?.1, qkv, keep_probs)
    }

    /// [`Attention::forward`] for `queries` query rows per sequence (q and the context
    /// [batch, queries, hidden]); k and v are of `shape` [batch, seq, hidden].
    fn forward_queries(
        &self,
        shape: &Shape,
        queries: usize,
        (q, k, v): (&[f32], &[f32], &[f32]),
        keep_probs: bool,
    ) -> candle_core::Result<(Vec<f32>, Option<Vec<f32>>)> {
        let tiles = self.bf16 && attention_on_tiles();
        self.forward_queries_with(shape, queries, (q, k, v), keep_probs, tiles)
    }

    /// [`Attention::forward_queries`], on the tile unit if `tiles` (which needs
    /// [`attention_on_tiles`] and `bf16`).
    fn forward_queries_with(
        &self,
        shape: &Shape,
        queries: usize,
        (q, k, v): (&[f32], &[f32], &[f32]),
        keep_probs: bool,
        tiles: bool,
    ) -> candle_core::Result<(Vec<f32>, Option<Vec<f32>>)> {
        let blocks = self.blocks(shape, queries)?;
        let mut context = vec![0.0; q.len()];
        let output = SharedOutput::new(&mut context);
        let rounded: [Vec<f32>; 3];
        let (q, k, v) = if self.bf16 {
            // The tile path keeps no probabilities for a backward pass.
            if tiles && attention_on_tiles() && !keep_probs {
                blocks
                    .par_iter()
                    .for_each_init(TileScratch::default, |scratch, &block| {
                        // SAFETY: the CPU has the tile unit; each block writes its own head's
                        // columns of its own sequence.
                        unsafe { self.attend_tiles((q, k, v), block, &output, scratch) }
                    });
                return Ok((context, None));
            }
            rounded = [q, k, v].map(|x| {
                let mut x = x.to_vec();
                bf16::round_in_place(&mut x);
                x
            });
            (&rounded[0][..], &rounded[1][..], &rounded[2][..])
        } else {
            (q, k, v)
        };
        let attend = |probs: &mut [f32], dropped: &mut Vec<f32>, block: Block| {
            let (seq, queries) = (block.seq, block.queries);
            self.probabilities(q, k, block, probs);
            if self.bf16 {
                bf16::round_in_place(probs);
            }
            let probs: &[f32] = match self.dropout_factors(block) {
                Some(factors) => {
                    dropped.clear();
                    dropped.extend(probs.iter().zip(factors).map(|(p, f)| p * f));
                    dropped
                }
                None => probs,
            };
            // SAFETY: each block writes its own head's columns of its own sequence.
            let out =
                unsafe { output.view(block.query_offset, (queries, block.head_dim), block.hidden) };
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

    /// One block's context on the tile unit: q·kᵀ (bf16 in, f32 sums), the masked softmax
    /// in f32, then the probabilities rounded to bf16 times v.
    ///
    /// # Safety
    /// [`attention_on_tiles`] is true; no other task writes this block's context.
    unsafe fn attend_tiles(
        &self,
        (q, k, v): (&[f32], &[f32], &[f32]),
        block: Block,
        output: &SharedOutput,
        scratch: &mut TileScratch,
    ) {
        let (seq, queries, head_dim, hidden) =
            (block.seq, block.queries, block.head_dim, block.hidden);
        if queries == 0 || seq == 0 {
            return;
        }
        let row_blocks = 0..queries.div_ceil(BLOCK);
        let padded_queries = row_blocks.end * BLOCK;
        let head_depth = head_dim.next_multiple_of(DEPTH);
        let TileScratch {
            query,
            scores,
            probs,
        } = scratch;
        query.clear();
        query.resize(padded_queries * head_depth, 0);
        let query_rows = &q[block.query_offset..][..(queries - 1) * hidden + head_dim];
        bf16::round_rows(query, head_depth, query_rows, hidden, head_dim);
        let keys = bf16::pack_rows(seq, head_dim, &k[block.offset..], hidden);
        // Every score is written below, and every probability row with its padding: the
        // buffers only grow.
        if scores.len() < queries * seq {
            scores.resize(queries * seq, 0.0);
        }
        let scores = &mut scores[..queries * seq];
        let query_key = bf16::Product {
            a: query,
            depth: head_depth,
            rows: queries,
            packed: &keys,
            outputs: seq,
        };
        let key_blocks = 0..seq.div_ceil(BLOCK);
        query_key.on_tiles(row_blocks.clone(), key_blocks, |b| {
            for (row, sums) in b.rows() {
                scores[row * seq + b.first_column..][..b.columns].copy_from_slice(sums);
            }
        });
        let mask = &self.bias.values[block.mask_offset..][..block.mask_len];
        let key_depth = seq.next_multiple_of(DEPTH);
        if probs.len() < padded_queries * key_depth {
            probs.resize(padded_queries * key_depth, 0);
        }
        // Rows past `queries` keep what they held: their products are not read.
        let probs = &mut probs[..padded_queries * key_depth];
        softmax_rows_to_bf16(scores, self.scale, mask, seq, probs, key_depth);
        let values = bf16::pack_columns(head_dim, seq, &v[block.offset..], hidden);
        let probs_value = bf16::Product {
            a: probs,
            depth: key_depth,
            rows: queries,
            packed: &values,
            outputs: head_dim,
        };
        let dim_blocks = 0..head_dim.div_ceil(BLOCK);
        probs_value.on_tiles(row_blocks, dim_blocks, |b| {
            for (row, sums) in b.rows() {
                let offset = block.query_offset + row * hidden + b.first_column;
                output.slice(offset, b.columns).copy_from_slice(sums);
            }
        });
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
        let blocks = self.blocks(shape, shape.dims3()?.1)?;
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

/// Per-task buffers of [`Attention::attend_tiles`]: the block's queries in bf16, its scores
/// and its probabilities in bf16.
#[derive(Default)]
struct TileScratch {
    query: Vec<u16>,
    scores: Vec<f32>,
    probs: Vec<u16>,
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
        let (context, _) = self.forward_queries(k_layout.shape(), queries, (q, k, v), false)?;
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
/// `bf16`: inference in bf16 (see the module's comment); ignored with dropout.
pub fn attention(
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    heads: usize,
    scale: f32,
    bias: &Tensor,
    dropout: Option<Vec<f32>>,
    bf16: bool,
) -> candle_core::Result<Tensor> {
    if !uses_cpu_kernels(q) {
        candle_core::bail!("the attention kernel takes CPU f32 tensors");
    }
    let op = Attention {
        heads,
        scale,
        bias: Bias::from_tensor(bias)?,
        bf16: bf16 && dropout.is_none(),
        dropout,
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn round(v: f32) -> f64 {
        let mut x = [v];
        bf16::round_in_place(&mut x);
        f64::from(x[0])
    }

    /// bf16 attention, on the tile unit (where the CPU has one) and on the portable path,
    /// against the sums in f64 of the bf16-rounded q, k, v and probabilities; and against f32
    /// attention, which it must differ from a little. Heads of 32 and 48 (depth padded to 64),
    /// a ragged number of keys, all queries and a subset, a per-key mask.
    #[test]
    fn bf16_attention_matches_the_rounded_sums() {
        let mut rng = Rng::new(17);
        for (batch, seq, queries, heads, head_dim) in
            [(2, 37, 37, 2, 32), (2, 37, 5, 2, 48), (1, 70, 33, 3, 32)]
        {
            let hidden = heads * head_dim;
            let mut random =
                |len: usize| -> Vec<f32> { (0..len).map(|_| rng.next_f32() * 2.0 - 1.0).collect() };
            let q = random(batch * queries * hidden);
            let (k, v) = (random(batch * seq * hidden), random(batch * seq * hidden));
            let mut mask = vec![0.0f32; batch * seq];
            mask[seq - 3..seq].fill(-1e9);
            let scale = 0.3f32;
            let mut expected = vec![0.0f64; batch * queries * hidden];
            for b in 0..batch {
                for h in 0..heads {
                    for i in 0..queries {
                        let at = |x: &[f32], rows: usize, r: usize, d: usize| {
                            round(x[(b * rows + r) * hidden + h * head_dim + d])
                        };
                        let scores: Vec<f64> = (0..seq)
                            .map(|j| {
                                let dot: f64 = (0..head_dim)
                                    .map(|d| at(&q, queries, i, d) * at(&k, seq, j, d))
                                    .sum();
                                dot * f64::from(scale) + f64::from(mask[b * seq + j])
                            })
                            .collect();
                        let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                        let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                        let total: f64 = exps.iter().sum();
                        for d in 0..head_dim {
                            expected[(b * queries + i) * hidden + h * head_dim + d] = (0..seq)
                                .map(|j| round((exps[j] / total) as f32) * at(&v, seq, j, d))
                                .sum();
                        }
                    }
                }
            }
            let shape = Shape::from((batch, seq, hidden));
            let op = |bf16| Attention {
                heads,
                scale,
                bias: Bias::per_key(mask.clone(), batch),
                dropout: None,
                bf16,
            };
            let run = |bf16, tiles| {
                op(bf16)
                    .forward_queries_with(&shape, queries, (&q, &k, &v), false, tiles)
                    .unwrap()
                    .0
            };
            let exact = run(false, false);
            let mut paths = vec![false];
            if attention_on_tiles() {
                paths.push(true);
            }
            for tiles in paths {
                let got = run(true, tiles);
                let case = format!(
                    "tiles {tiles}, {batch}×{seq} keys, {queries} queries, {heads}×{head_dim}"
                );
                let worst = |other: &mut dyn Iterator<Item = f64>| {
                    got.iter()
                        .zip(other)
                        .map(|(&g, o)| (f64::from(g) - o).abs())
                        .fold(0.0, f64::max)
                };
                let from_expected = worst(&mut expected.iter().copied());
                assert!(
                    from_expected < 4e-3,
                    "{case}: {from_expected} from the rounded sums"
                );
                let from_f32 = worst(&mut exact.iter().map(|&x| f64::from(x)));
                assert!(
                    from_f32 > 1e-5 && from_f32 < 3e-2,
                    "{case}: {from_f32} from f32 attention"
                );
            }
        }
    }
}

//! Packs a text and its candidate labels into encoder sequences:
//!
//! `[CLS] text [SEP] label_1 [SEP] label_2 [SEP] …`
//!
//! (`[CLS]`, `[SEP]` and `[PAD]` name the roles; each encoder family has its own tokens for
//! them, [`SpecialTokens`]: MPNet's are `<s>`, `</s>` and `<pad>`.)
//!
//! Each label's score is read at its first token. The text is truncated to what is left of
//! `max_length` after `[CLS]`, one `[SEP]` after the text, and each label with its `[SEP]`.
//! Labels are never dropped: when they do not fit beside `min_text_tokens` of text, they are
//! split into chunks and the text is encoded once per chunk. A label longer than
//! `max_label_tokens` is capped, and the cap is reported in the returned [`TextEncoding`].

use crate::data::labels::{label_names, validate_labels, Label};
use crate::error::input_error;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::Tokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackingLimits {
    /// Longest sequence given to the encoder, special tokens included.
    pub max_length: usize,
    /// Tokens a single label may take; longer labels are capped.
    pub max_label_tokens: usize,
    /// Text tokens every sequence keeps (when the text has that many) before labels are chunked.
    pub min_text_tokens: usize,
}

impl Default for PackingLimits {
    fn default() -> Self {
        Self {
            max_length: 256,
            max_label_tokens: 16,
            min_text_tokens: 32,
        }
    }
}

impl PackingLimits {
    /// `[CLS]` and the `[SEP]` after the text.
    const FIXED_TOKENS: usize = 2;

    pub fn validate(&self) -> Result<(), String> {
        if self.max_label_tokens == 0 || self.min_text_tokens == 0 {
            return Err("max_label_tokens and min_text_tokens must be at least 1".into());
        }
        let needed = Self::FIXED_TOKENS + self.min_text_tokens + self.max_label_tokens + 1;
        if self.max_length < needed {
            return Err(format!(
                "max_length {} is too small: one capped label and the minimum text need {needed} \
                 (2 special tokens + min_text_tokens {} + max_label_tokens {} + 1 separator)",
                self.max_length, self.min_text_tokens, self.max_label_tokens
            ));
        }
        Ok(())
    }
}

/// One encoder sequence: the text (possibly truncated) followed by a chunk of labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceEncoding {
    pub input_ids: Vec<u32>,
    /// Position in `input_ids` of the first token of each label in this chunk.
    pub label_positions: Vec<usize>,
    /// Index, in the caller's label list, of each label in this chunk.
    pub label_indices: Vec<usize>,
    /// Text tokens kept in this sequence.
    pub text_tokens_kept: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CappedLabel {
    pub index: usize,
    pub tokens: usize,
}

/// Everything one text and its labels became. Every label appears in exactly one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEncoding {
    pub chunks: Vec<SequenceEncoding>,
    /// Text tokens before truncation.
    pub text_tokens: usize,
    pub capped_labels: Vec<CappedLabel>,
}

impl TextEncoding {
    pub fn text_truncated(&self) -> bool {
        self.chunks
            .iter()
            .any(|c| c.text_tokens_kept < self.text_tokens)
    }
}

/// Label token ids, tokenized once and reused for every text that shares the label list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedLabels {
    ids: Vec<Vec<u32>>,
    capped: Vec<CappedLabel>,
}

impl EncodedLabels {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tokens of every label with the separator after each, as packed after a text.
    pub fn packed_tokens(&self) -> usize {
        self.ids.iter().map(|l| l.len() + 1).sum()
    }

    /// The labels at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> EncodedLabels {
        EncodedLabels {
            ids: indices.iter().map(|&i| self.ids[i].clone()).collect(),
            capped: Vec::new(),
        }
    }

    /// The tokens of label `index` as the model reads it (template included).
    pub fn tokens(&self, index: usize) -> &[u32] {
        &self.ids[index]
    }

    /// Every distinct label of `lists` once (by its tokens, in order of first appearance),
    /// and for each list where its labels are in that one.
    pub fn distinct(lists: &[&EncodedLabels]) -> (EncodedLabels, Vec<Vec<u32>>) {
        let mut ids: Vec<Vec<u32>> = Vec::new();
        let mut index: HashMap<&[u32], u32> = HashMap::new();
        let rows = lists
            .iter()
            .map(|list| {
                list.ids
                    .iter()
                    .map(|label| {
                        *index.entry(label.as_slice()).or_insert_with(|| {
                            ids.push(label.clone());
                            ids.len() as u32 - 1
                        })
                    })
                    .collect()
            })
            .collect();
        let capped = Vec::new();
        (EncodedLabels { ids, capped }, rows)
    }
}

/// The tokens that open a sequence (`[CLS]`), close the text and each label (`[SEP]`) and pad
/// it (`[PAD]`), as the encoder family's vocabulary spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    pub cls: &'static str,
    pub sep: &'static str,
    pub pad: &'static str,
}

impl SpecialTokens {
    /// BERT's WordPiece vocabularies (MiniLM included).
    pub const BERT: Self = Self {
        cls: "[CLS]",
        sep: "[SEP]",
        pad: "[PAD]",
    };
    /// MPNet's (RoBERTa's names over a WordPiece vocabulary).
    pub const MPNET: Self = Self {
        cls: "<s>",
        sep: "</s>",
        pad: "<pad>",
    };
}

#[derive(Clone)]
pub struct LabelTokenizer {
    inner: Tokenizer,
    cls_id: u32,
    sep_id: u32,
    pad_id: u32,
    special: SpecialTokens,
    limits: PackingLimits,
    /// Tokens put before and after every label's own (capped) tokens: a label template.
    label_wrap: LabelWrap,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LabelWrap {
    before: Vec<u32>,
    after: Vec<u32>,
}

impl LabelTokenizer {
    /// Loads `tokenizer.json`, switching off its own padding and truncation.
    pub fn from_file(path: &Path, limits: PackingLimits, special: SpecialTokens) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| input_error(format!("cannot load tokenizer {}: {e}", path.display())))?;
        Self::new(inner, limits, special).with_context(|| format!("tokenizer {}", path.display()))
    }

    /// `special`: the encoder family's special tokens, which the vocabulary must have.
    pub fn new(
        mut inner: Tokenizer,
        limits: PackingLimits,
        special: SpecialTokens,
    ) -> Result<Self> {
        limits.validate().map_err(input_error)?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| anyhow::anyhow!("cannot switch off truncation: {e}"))?;
        let id_of = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| input_error(format!("the vocabulary has no {token} token")))
        };
        Ok(Self {
            cls_id: id_of(special.cls)?,
            sep_id: id_of(special.sep)?,
            pad_id: id_of(special.pad)?,
            special,
            inner,
            limits,
            label_wrap: LabelWrap::default(),
        })
    }

    /// Reads every label through `template` (`{label}` replaced by the label, e.g. "This text
    /// is about {label}."); `None` reads labels as they are. `max_label_tokens` caps the
    /// label's own tokens, and the template's tokens come on top.
    pub fn with_label_template(mut self, template: Option<&str>) -> Result<Self> {
        let Some(template) = template else {
            self.label_wrap = LabelWrap::default();
            return Ok(self);
        };
        let (before, after) = split_label_template(template).map_err(input_error)?;
        // A template written for another encoder family names special tokens this vocabulary
        // reads as plain text ("[CLS]" is four word pieces to MPNet's).
        for family in [SpecialTokens::BERT, SpecialTokens::MPNET] {
            for spelled in [family.cls, family.sep, family.pad] {
                if template.contains(spelled) && self.tokenize(spelled)?.len() != 1 {
                    return Err(input_error(format!(
                        "label_template {template:?} names {spelled}, which this model's \
                         vocabulary does not have as a token; it spells them {}, {} and {}",
                        self.special.cls, self.special.sep, self.special.pad
                    )));
                }
            }
        }
        let label_wrap = LabelWrap {
            before: self.tokenize(before)?,
            after: self.tokenize(after)?,
        };
        let limits = self.limits;
        let wrapped = limits.max_label_tokens + label_wrap.before.len() + label_wrap.after.len();
        let needed = PackingLimits::FIXED_TOKENS + limits.min_text_tokens + wrapped + 1;
        if limits.max_length < needed {
            return Err(input_error(format!(
                "label_template {template:?} does not fit: a capped label in it takes {wrapped} \
                 tokens, and with min_text_tokens {} the sequence needs {needed}, more than \
                 max_length {}",
                limits.min_text_tokens, limits.max_length
            )));
        }
        self.label_wrap = label_wrap;
        Ok(self)
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| anyhow::anyhow!("tokenization failed: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// A string on its own, `[CLS] tokens [SEP]`, cut to `max_length` (for embeddings).
    pub fn encode_single(&self, text: &str) -> Result<SequenceEncoding> {
        let mut tokens = self.tokenize(text)?;
        tokens.truncate(self.limits.max_length - PackingLimits::FIXED_TOKENS);
        let mut input_ids = Vec::with_capacity(tokens.len() + 2);
        input_ids.push(self.cls_id);
        input_ids.extend_from_slice(&tokens);
        input_ids.push(self.sep_id);
        Ok(SequenceEncoding {
            input_ids,
            label_positions: Vec::new(),
            label_indices: Vec::new(),
            text_tokens_kept: tokens.len(),
        })
    }

    /// A text to be scored on its own, `[CLS] text [SEP]` cut to `max_length`, as one chunk;
    /// an empty text is an input error, as in [`LabelTokenizer::encode_with_labels`].
    pub fn encode_text(&self, text: &str, labels: &EncodedLabels) -> Result<TextEncoding> {
        Ok(self.pack_text(&self.text_tokens(text)?, labels))
    }

    /// [`LabelTokenizer::encode_text`] for a text already tokenized
    /// ([`LabelTokenizer::text_tokens`]).
    pub fn pack_text(&self, text_ids: &[u32], labels: &EncodedLabels) -> TextEncoding {
        let kept = text_ids
            .len()
            .min(self.limits.max_length - PackingLimits::FIXED_TOKENS);
        TextEncoding {
            chunks: vec![self.pack(&text_ids[..kept], &[], 0..0)],
            text_tokens: text_ids.len(),
            capped_labels: labels.capped.clone(),
        }
    }

    /// The labels packed with no text, `[CLS] [SEP] label [SEP] …`: what the model makes of a
    /// label before it reads anything (its prior). Labels that do not fit are chunked.
    pub fn encode_without_text(&self, labels: &EncodedLabels) -> Vec<SequenceEncoding> {
        let budget = self.limits.max_length - PackingLimits::FIXED_TOKENS;
        label_chunks(labels, budget)
            .into_iter()
            .map(|(chunk, _)| self.pack(&[], &labels.ids, chunk))
            .collect()
    }

    /// Validates and tokenizes a label list, capping labels longer than `max_label_tokens`.
    pub fn encode_labels(&self, labels: &[String]) -> Result<EncodedLabels> {
        let labels: Vec<Label> = labels.iter().map(|l| Label::Name(l.clone())).collect();
        self.encode_described_labels(&labels)
    }

    /// [`LabelTokenizer::encode_labels`] for labels that may carry a description: the names
    /// are validated, the model reads `name: description`, capped at the most tokens a label
    /// can take beside `min_text_tokens` of text (a bare name at `max_label_tokens`).
    pub fn encode_described_labels(&self, labels: &[Label]) -> Result<EncodedLabels> {
        validate_labels(&label_names(labels)).map_err(input_error)?;
        let wrap = self.label_wrap.before.len() + self.label_wrap.after.len();
        let described_cap = (self.limits.max_length
            - PackingLimits::FIXED_TOKENS
            - self.limits.min_text_tokens
            - 1)
        .saturating_sub(wrap)
        .max(self.limits.max_label_tokens);
        let mut ids = Vec::with_capacity(labels.len());
        let mut capped = Vec::new();
        for (index, label) in labels.iter().enumerate() {
            let mut tokens = self.tokenize(&label.reading())?;
            if tokens.is_empty() {
                return Err(input_error(format!(
                    "label {:?} has no tokens",
                    label.name()
                )));
            }
            let cap = if label.is_described() {
                described_cap
            } else {
                self.limits.max_label_tokens
            };
            if tokens.len() > cap {
                capped.push(CappedLabel {
                    index,
                    tokens: tokens.len(),
                });
                tokens.truncate(cap);
            }
            if !self.label_wrap.before.is_empty() || !self.label_wrap.after.is_empty() {
                tokens = [&self.label_wrap.before[..], &tokens, &self.label_wrap.after].concat();
            }
            ids.push(tokens);
        }
        Ok(EncodedLabels { ids, capped })
    }

    pub fn encode(&self, text: &str, labels: &[String]) -> Result<TextEncoding> {
        self.encode_with_labels(text, &self.encode_labels(labels)?)
    }

    /// The text's tokens; an empty text, or one with no tokens after normalisation (only
    /// zero-width or control characters, say), is an input error.
    pub fn text_tokens(&self, text: &str) -> Result<Vec<u32>> {
        if text.trim().is_empty() {
            return Err(input_error("the text is empty"));
        }
        let text_ids = self.tokenize(text)?;
        if text_ids.is_empty() {
            return Err(input_error("the text has no tokens after normalisation"));
        }
        Ok(text_ids)
    }

    pub fn encode_with_labels(&self, text: &str, labels: &EncodedLabels) -> Result<TextEncoding> {
        Ok(self.pack_with_labels(&self.text_tokens(text)?, labels))
    }

    /// [`LabelTokenizer::encode_with_labels`] for a text already tokenized
    /// ([`LabelTokenizer::text_tokens`]).
    pub fn pack_with_labels(&self, text_ids: &[u32], labels: &EncodedLabels) -> TextEncoding {
        let limits = self.limits;
        let min_text = text_ids.len().min(limits.min_text_tokens);
        let label_budget = limits.max_length - PackingLimits::FIXED_TOKENS - min_text;

        let chunks = label_chunks(labels, label_budget)
            .into_iter()
            .map(|(chunk, cost)| {
                let text_kept = text_ids
                    .len()
                    .min(limits.max_length - PackingLimits::FIXED_TOKENS - cost);
                self.pack(&text_ids[..text_kept], &labels.ids, chunk)
            })
            .collect();
        TextEncoding {
            chunks,
            text_tokens: text_ids.len(),
            capped_labels: labels.capped.clone(),
        }
    }

    fn pack(
        &self,
        text_ids: &[u32],
        label_ids: &[Vec<u32>],
        chunk: std::ops::Range<usize>,
    ) -> SequenceEncoding {
        let mut input_ids = Vec::with_capacity(self.limits.max_length);
        input_ids.push(self.cls_id);
        input_ids.extend_from_slice(text_ids);
        input_ids.push(self.sep_id);
        let mut label_positions = Vec::with_capacity(chunk.len());
        for ids in &label_ids[chunk.clone()] {
            label_positions.push(input_ids.len());
            input_ids.extend_from_slice(ids);
            input_ids.push(self.sep_id);
        }
        SequenceEncoding {
            input_ids,
            label_positions,
            label_indices: chunk.collect(),
            text_tokens_kept: text_ids.len(),
        }
    }
}

/// The text before and after the one `{label}` of a label template.
pub fn split_label_template(template: &str) -> Result<(&str, &str), String> {
    match template.split_once("{label}") {
        Some((before, after)) if !after.contains("{label}") => Ok((before, after)),
        _ => Err(format!(
            "label_template {template:?} must contain {{label}} exactly once"
        )),
    }
}

/// Consecutive runs of labels whose tokens, each followed by its `[SEP]`, fit in `budget`,
/// with the tokens each run takes.
fn label_chunks(labels: &EncodedLabels, budget: usize) -> Vec<(std::ops::Range<usize>, usize)> {
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < labels.ids.len() {
        let mut end = start;
        let mut cost = 0;
        while end < labels.ids.len() && cost + labels.ids[end].len() < budget {
            cost += labels.ids[end].len() + 1;
            end += 1;
        }
        chunks.push((start..end, cost));
        start = end;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::testing::{tiny_tokenizer, TINY_WORDS};

    fn tokenizer(limits: PackingLimits) -> LabelTokenizer {
        LabelTokenizer::new(tiny_tokenizer(), limits, SpecialTokens::BERT).unwrap()
    }

    fn random_words(rng: &mut Rng, n: usize) -> String {
        (0..n)
            .map(|_| TINY_WORDS[rng.below(TINY_WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn random_labels(rng: &mut Rng, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let words = 1 + rng.below(4);
                format!("{} {i}", random_words(rng, words))
            })
            .collect()
    }

    fn random_limits(rng: &mut Rng) -> PackingLimits {
        let max_label_tokens = 1 + rng.below(8);
        let min_text_tokens = 1 + rng.below(16);
        let floor = 2 + max_label_tokens + 1 + min_text_tokens;
        PackingLimits {
            max_length: floor + rng.below(64),
            max_label_tokens,
            min_text_tokens,
        }
    }

    #[test]
    fn packs_text_and_labels_in_order() {
        let tok = tokenizer(PackingLimits::default());
        let labels = vec!["cat".to_string(), "dog house".to_string()];
        let enc = tok.encode("the cat sat", &labels).unwrap();
        assert_eq!(enc.chunks.len(), 1);
        let seq = &enc.chunks[0];
        let inner = tok.inner();
        let id = |t: &str| inner.token_to_id(t).unwrap();
        let text: Vec<u32> = inner
            .encode("the cat sat", false)
            .unwrap()
            .get_ids()
            .to_vec();
        let dog_house: Vec<u32> = inner.encode("dog house", false).unwrap().get_ids().to_vec();
        let mut expected = vec![id("[CLS]")];
        expected.extend(&text);
        expected.push(id("[SEP]"));
        expected.push(id("cat"));
        expected.push(id("[SEP]"));
        expected.extend(&dog_house);
        expected.push(id("[SEP]"));
        assert_eq!(seq.input_ids, expected);
        assert_eq!(seq.label_positions, vec![text.len() + 2, text.len() + 4]);
        assert_eq!(seq.label_indices, vec![0, 1]);
        assert!(!enc.text_truncated());
    }

    /// Property: for random texts, label sets and limits, every sequence fits, every label is
    /// encoded exactly once in input order, each label position points at that label's first
    /// token, and the text is cut only when the labels leave no room for it.
    /// Labels packed without a text: `[CLS] [SEP]` then labels, every label exactly once and
    /// in order, no sequence over `max_length`, for random label lists and limits.
    #[test]
    fn labels_without_text_are_each_packed_once() {
        let mut rng = Rng::new(7);
        for case in 0..200 {
            let limits = random_limits(&mut rng);
            let tok = tokenizer(limits);
            let count = 1 + rng.below(40);
            let labels = random_labels(&mut rng, count);
            let encoded = tok.encode_labels(&labels).unwrap();
            let chunks = tok.encode_without_text(&encoded);
            let mut seen: Vec<usize> = Vec::new();
            for seq in &chunks {
                assert!(seq.input_ids.len() <= limits.max_length, "case {case}");
                assert_eq!(
                    &seq.input_ids[..2],
                    &[tok.cls_id, tok.sep_id],
                    "case {case}"
                );
                assert_eq!(seq.text_tokens_kept, 0);
                for (&pos, &index) in seq.label_positions.iter().zip(&seq.label_indices) {
                    let ids = &encoded.ids[index];
                    assert_eq!(
                        &seq.input_ids[pos..pos + ids.len()],
                        &ids[..],
                        "case {case}"
                    );
                    assert_eq!(seq.input_ids[pos + ids.len()], tok.sep_id, "case {case}");
                }
                seen.extend(&seq.label_indices);
            }
            assert_eq!(seen, (0..labels.len()).collect::<Vec<_>>(), "case {case}");
        }
    }

    #[test]
    fn packing_invariants_hold_for_random_inputs() {
        let mut rng = Rng::new(42);
        for case in 0..400 {
            let limits = random_limits(&mut rng);
            let tok = tokenizer(limits);
            let (text_words, label_count) = (1 + rng.below(120), 1 + rng.below(40));
            let text = random_words(&mut rng, text_words);
            let labels = random_labels(&mut rng, label_count);
            let encoded_labels = tok.encode_labels(&labels).unwrap();
            let enc = tok.encode_with_labels(&text, &encoded_labels).unwrap();
            let text_ids = tok.tokenize(&text).unwrap();

            let mut seen: Vec<usize> = Vec::new();
            for seq in &enc.chunks {
                assert!(
                    seq.input_ids.len() <= limits.max_length,
                    "case {case}: too long"
                );
                assert!(!seq.label_indices.is_empty(), "case {case}: empty chunk");
                assert_eq!(seq.input_ids[0], tok.cls_id);
                assert_eq!(
                    &seq.input_ids[1..1 + seq.text_tokens_kept],
                    &text_ids[..seq.text_tokens_kept]
                );
                assert_eq!(seq.input_ids[1 + seq.text_tokens_kept], tok.sep_id);
                assert!(seq.text_tokens_kept >= text_ids.len().min(limits.min_text_tokens));
                for (&pos, &index) in seq.label_positions.iter().zip(&seq.label_indices) {
                    let label_ids = &encoded_labels.ids[index];
                    assert_eq!(
                        &seq.input_ids[pos..pos + label_ids.len()],
                        &label_ids[..],
                        "case {case}"
                    );
                    assert_eq!(seq.input_ids[pos + label_ids.len()], tok.sep_id);
                    assert_eq!(seq.input_ids[pos - 1], tok.sep_id);
                }
                assert_eq!(*seq.input_ids.last().unwrap(), tok.sep_id);
                if seq.text_tokens_kept < text_ids.len() {
                    assert_eq!(
                        seq.input_ids.len(),
                        limits.max_length,
                        "case {case}: cut without need"
                    );
                }
                seen.extend(&seq.label_indices);
            }
            assert_eq!(seen, (0..labels.len()).collect::<Vec<_>>(), "case {case}");
            for capped in &enc.capped_labels {
                assert!(capped.tokens > limits.max_label_tokens);
                assert_eq!(
                    encoded_labels.ids[capped.index].len(),
                    limits.max_label_tokens
                );
            }
        }
    }

    #[test]
    fn long_text_is_cut_exactly_to_the_budget() {
        let tok = tokenizer(PackingLimits {
            max_length: 64,
            max_label_tokens: 8,
            min_text_tokens: 8,
        });
        let text = random_words(&mut Rng::new(1), 500);
        let labels = vec!["cat".to_string(), "dog".to_string()];
        let enc = tok.encode(&text, &labels).unwrap();
        assert_eq!(enc.chunks.len(), 1);
        // 64 = [CLS] + text + [SEP] + (cat [SEP]) + (dog [SEP])
        assert_eq!(enc.chunks[0].text_tokens_kept, 64 - 2 - 4);
        assert_eq!(enc.chunks[0].input_ids.len(), 64);
        assert!(enc.text_truncated());
    }

    #[test]
    fn many_labels_are_chunked_and_all_scored() {
        let tok = tokenizer(PackingLimits {
            max_length: 48,
            max_label_tokens: 8,
            min_text_tokens: 16,
        });
        let labels: Vec<String> = (0..500).map(|i| format!("label {i}")).collect();
        let enc = tok.encode("a short text about cats", &labels).unwrap();
        assert!(enc.chunks.len() > 10);
        let all: Vec<usize> = enc
            .chunks
            .iter()
            .flat_map(|c| c.label_indices.clone())
            .collect();
        assert_eq!(all, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn over_long_label_is_capped_and_reported() {
        let tok = tokenizer(PackingLimits {
            max_length: 64,
            max_label_tokens: 4,
            min_text_tokens: 8,
        });
        let labels = vec![
            "cat".to_string(),
            "the very long and winding road home".to_string(),
        ];
        let enc = tok.encode("text", &labels).unwrap();
        assert_eq!(enc.capped_labels.len(), 1);
        assert_eq!(enc.capped_labels[0].index, 1);
        assert!(enc.capped_labels[0].tokens > 4);
    }

    #[test]
    fn bad_inputs_are_input_errors() {
        let tok = tokenizer(PackingLimits::default());
        let labels = vec!["cat".to_string()];
        for (text, labels) in [
            ("", labels.clone()),
            ("   ", labels.clone()),
            ("text", vec![]),
            ("text", vec!["cat".into(), " ".into()]),
            ("text", vec!["cat".into(), "Cat".into()]),
        ] {
            let err = tok.encode(text, &labels).unwrap_err();
            assert!(
                crate::error::is_input_error(&err),
                "{text:?} {labels:?}: {err}"
            );
        }
    }

    #[test]
    fn limits_too_small_for_one_label_are_rejected() {
        let limits = PackingLimits {
            max_length: 10,
            max_label_tokens: 8,
            min_text_tokens: 4,
        };
        assert!(limits.validate().is_err());
        assert!(LabelTokenizer::new(tiny_tokenizer(), limits, SpecialTokens::BERT).is_err());
    }

    #[test]
    fn distinct_labels_rebuild_every_list_and_hold_each_label_once() {
        let tok = tokenizer(PackingLimits::default());
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            let lists: Vec<EncodedLabels> = (0..1 + rng.below(5))
                .map(|_| {
                    let mut names: Vec<String> = (0..1 + rng.below(6))
                        .map(|_| {
                            let words = 1 + rng.below(2);
                            random_words(&mut rng, words)
                        })
                        .collect();
                    names.sort();
                    names.dedup();
                    tok.encode_labels(&names).unwrap()
                })
                .collect();
            let refs: Vec<&EncodedLabels> = lists.iter().collect();
            let (distinct, rows) = EncodedLabels::distinct(&refs);
            for (list, rows) in lists.iter().zip(&rows) {
                let rebuilt: Vec<&Vec<u32>> =
                    rows.iter().map(|&r| &distinct.ids[r as usize]).collect();
                assert_eq!(rebuilt, list.ids.iter().collect::<Vec<_>>());
            }
            let mut unique = distinct.ids.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), distinct.len());
        }
    }

    #[test]
    fn a_label_template_reads_each_label_as_the_templated_phrase() {
        let limits = PackingLimits {
            max_length: 64,
            max_label_tokens: 3,
            min_text_tokens: 8,
        };
        let templated = tokenizer(limits)
            .with_label_template(Some("text about {label}."))
            .unwrap();
        let text = "the cat sat on the mat";
        let labels = vec!["cat".to_string(), "good dog".to_string()];
        let as_phrases: Vec<String> = labels.iter().map(|l| format!("text about {l}.")).collect();
        let phrases = tokenizer(PackingLimits {
            max_label_tokens: 8,
            ..limits
        });
        assert_eq!(
            templated.encode(text, &labels).unwrap().chunks,
            phrases.encode(text, &as_phrases).unwrap().chunks
        );

        // The cap applies to the label's own tokens; the template's come on top.
        let long = vec!["very long and winding road".to_string()];
        let enc = templated.encode(text, &long).unwrap();
        assert_eq!(
            enc.capped_labels,
            vec![CappedLabel {
                index: 0,
                tokens: 5
            }]
        );
        let ids = &enc.chunks[0].input_ids;
        let start = enc.chunks[0].label_positions[0];
        let expected = phrases
            .encode(text, &["text about very long and.".to_string()])
            .unwrap();
        assert_eq!(ids[start..], expected.chunks[0].input_ids[start..]);
    }

    #[test]
    fn bad_label_templates_are_input_errors() {
        let limits = PackingLimits {
            max_length: 16,
            max_label_tokens: 4,
            min_text_tokens: 8,
        };
        for template in ["no placeholder", "{label} and {label}", "a b c d {label}"] {
            let err = tokenizer(limits)
                .with_label_template(Some(template))
                .err()
                .unwrap_or_else(|| panic!("{template:?} was accepted"));
            assert!(crate::error::is_input_error(&err), "{template:?}: {err}");
            assert!(err.to_string().contains("label_template"), "{err}");
        }
        assert!(tokenizer(limits)
            .with_label_template(Some("a {label}"))
            .is_ok());
        // A template written for BERT's vocabulary, given to MPNet's (where "[CLS]" would be
        // read as four word pieces), is refused with the spelling to use.
        let mpnet = |template| {
            LabelTokenizer::new(
                crate::testing::tiny_tokenizer_for(crate::model::bert::ModelType::Mpnet),
                limits,
                SpecialTokens::MPNET,
            )
            .unwrap()
            .with_label_template(Some(template))
        };
        assert!(mpnet("<s> {label}").is_ok());
        let err = mpnet("[CLS] {label}")
            .err()
            .expect("[CLS] in an MPNet template was accepted");
        assert!(crate::error::is_input_error(&err), "{err}");
        assert!(
            err.to_string().contains("names [CLS]") && err.to_string().contains("<s>"),
            "{err}"
        );
    }

    #[test]
    fn a_text_alone_is_cut_to_max_length_and_keeps_its_labels_caps() {
        let limits = PackingLimits {
            max_length: 16,
            max_label_tokens: 2,
            min_text_tokens: 4,
        };
        let tok = tokenizer(limits);
        let labels = tok
            .encode_labels(&["cat".to_string(), "very long and winding".to_string()])
            .unwrap();
        let text = "the cat sat on the mat and the dog sat on the house very long";
        let enc = tok.encode_text(text, &labels).unwrap();
        assert_eq!(enc.chunks.len(), 1);
        assert_eq!(enc.chunks[0].input_ids.len(), 16);
        assert_eq!(enc.chunks[0].text_tokens_kept, 14);
        assert_eq!(enc.text_tokens, 15);
        assert!(enc.text_truncated());
        assert_eq!(
            enc.capped_labels,
            vec![CappedLabel {
                index: 1,
                tokens: 4
            }]
        );
        assert_eq!(
            enc.chunks[0].input_ids,
            tok.encode_single(text).unwrap().input_ids
        );
        let err = tok.encode_text("  ", &labels).unwrap_err();
        assert!(crate::error::is_input_error(&err), "{err}");
    }
}

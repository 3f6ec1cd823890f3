"""PyTorch reference of gliznet's model and work, driven by bench/run.py.

The same model (transformers BertModel, then the [CLS] vector and each label's first-token
vector, an optional projection and a similarity head), the same packing of text and labels
into token sequences (tokenizers, from the same tokenizer.json, with gliznet's rules), the same
batches. Also the cost an NLI cross-encoder would pay: one forward pass per (text, label) pair,
with random weights in bart-large-mnli's shape and in MiniLM's.

    python bench/reference.py predict MODEL_DIR LABELS TEXTS... [--reps 3] [--batches 16,1] [--device cpu] [--quantize]
    python bench/reference.py predict-file MODEL_DIR LABELS TEXTS [--k 20] [--batch 16]
    python bench/reference.py predict-one MODEL_DIR TEXT LABELS
    python bench/reference.py train MODEL_DIR TRAIN_JSONL --max-length N [--steps 6] [--device cpu]
    python bench/reference.py cross-encoder MODEL_DIR TEXTS... [--reps 2]
"""

import argparse
import json
import statistics
import sys
import time

import torch
from tokenizers import Tokenizer
from transformers import (BartConfig, BartForSequenceClassification, BertConfig, BertForSequenceClassification,
                          BertModel)


class Packer:
    """gliznet's packing: [CLS] text [SEP] l1 [SEP] l2 [SEP] …, text cut to fit, labels chunked."""

    def __init__(self, model_dir, max_length=256, max_label_tokens=16, min_text_tokens=32):
        self.tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
        self.tok.no_padding()
        self.tok.no_truncation()
        self.cls, self.sep, self.pad = (self.tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
        self.max_length, self.max_label_tokens, self.min_text_tokens = max_length, max_label_tokens, min_text_tokens

    def ids(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_labels(self, labels):
        return [self.ids(l.strip())[: self.max_label_tokens] for l in labels]

    def encode(self, text, label_ids):
        text_ids = self.ids(text)
        budget = self.max_length - 2 - min(len(text_ids), self.min_text_tokens)
        chunks, start = [], 0
        while start < len(label_ids):
            end, cost = start, 0
            while end < len(label_ids) and cost + len(label_ids[end]) < budget:
                cost += len(label_ids[end]) + 1
                end += 1
            kept = min(len(text_ids), self.max_length - 2 - cost)
            seq = [self.cls] + text_ids[:kept] + [self.sep]
            positions = []
            for ids in label_ids[start:end]:
                positions.append(len(seq))
                seq += ids + [self.sep]
            chunks.append((seq, positions, list(range(start, end))))
            start = end
        return chunks


class GliZNetReference(torch.nn.Module):
    def __init__(self, model_dir, similarity="cosine", projection_dim=None):
        super().__init__()
        # f32 whatever the stored dtype (the GPU check's backbone is stored in f16).
        self.bert = BertModel.from_pretrained(model_dir, add_pooling_layer=False).float()
        hidden = self.bert.config.hidden_size
        self.projection = torch.nn.Linear(hidden, projection_dim) if projection_dim else None
        dim = projection_dim or hidden
        self.similarity = similarity
        self.log_scale = torch.nn.Parameter(torch.tensor([10.0]).log())
        self.bilinear = torch.nn.Parameter(torch.eye(dim)) if similarity == "bilinear" else None

    def forward(self, input_ids, attention_mask, label_rows, max_labels):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        b, s, d = hidden.shape
        text = hidden[:, 0]
        labels = hidden.reshape(b * s, d).index_select(0, label_rows).reshape(b, max_labels, d)
        if self.projection is not None:
            text, labels = self.projection(text), self.projection(labels)
        if self.similarity == "cosine":
            text = torch.nn.functional.normalize(text, dim=-1)
            labels = torch.nn.functional.normalize(labels, dim=-1)
            return (labels * text.unsqueeze(1)).sum(-1) * self.log_scale.exp()
        if self.similarity == "bilinear":
            text = text @ self.bilinear
        return (labels * text.unsqueeze(1)).sum(-1)


def collate(chunks, pad):
    seq_len = max(len(c[0]) for c in chunks)
    max_labels = max(len(c[1]) for c in chunks)
    ids = torch.full((len(chunks), seq_len), pad, dtype=torch.long)
    mask = torch.zeros((len(chunks), seq_len), dtype=torch.long)
    rows = torch.zeros(len(chunks) * max_labels, dtype=torch.long)
    label_mask = torch.zeros((len(chunks), max_labels))
    for b, (seq, positions, _) in enumerate(chunks):
        ids[b, : len(seq)] = torch.tensor(seq)
        mask[b, : len(seq)] = 1
        for slot in range(max_labels):
            rows[b * max_labels + slot] = b * seq_len + (positions[slot] if slot < len(positions) else 0)
            label_mask[b, slot] = float(slot < len(positions))
    return ids, mask, rows, label_mask, max_labels


def read_texts(path):
    return [json.loads(l)["text"] for l in open(path, encoding="utf-8")]


def score(model, packer, texts, label_ids, batch, device="cpu"):
    """Scores like gliznet: pack every text, sort the sequences by length, run in batches;
    the scores end on the host, as gliznet's do."""
    chunks = [c for t in texts for c in packer.encode(t, label_ids)]
    chunks.sort(key=lambda c: len(c[0]))
    out = []
    with torch.inference_mode():
        for i in range(0, len(chunks), batch):
            ids, mask, rows, _, max_labels = collate(chunks[i: i + batch], packer.pad)
            ids, mask, rows = ids.to(device), mask.to(device), rows.to(device)
            out.append(torch.sigmoid(model(ids, mask, rows, max_labels)).cpu())
    return out


def cmd_predict(args):
    model = GliZNetReference(args.model).eval().to(args.device)
    if args.quantize:
        # PyTorch's own int8 inference: weights per tensor, activations quantized per batch.
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    packer = Packer(args.model)
    labels = [l for l in open(args.labels, encoding="utf-8").read().splitlines() if l.strip()]
    for path in args.texts:
        texts = read_texts(path)
        for k in (5, 20, 50):
            label_ids = packer.encode_labels(labels[:k])
            for batch in (int(b) for b in args.batches.split(",")):
                rates = []
                for _ in range(args.reps):
                    start = time.perf_counter()
                    for i in range(0, len(texts), batch):
                        score(model, packer, texts[i: i + batch], label_ids, batch, args.device)
                    rates.append(len(texts) / (time.perf_counter() - start))
                print(json.dumps({"texts": path, "k": k, "batch": batch,
                                  "texts_per_second": statistics.median(rates), "runs": sorted(rates)}), flush=True)


def cmd_predict_file(args):
    """One pass over a texts file, as `gliznet predict --input` does (for peak memory)."""
    model = GliZNetReference(args.model).eval()
    packer = Packer(args.model)
    labels = [l for l in open(args.labels, encoding="utf-8").read().splitlines() if l.strip()][: args.k]
    score(model, packer, read_texts(args.texts), packer.encode_labels(labels), args.batch)


def cmd_predict_one(args):
    model = GliZNetReference(args.model).eval()
    packer = Packer(args.model)
    labels = args.labels.split(",")
    scores = score(model, packer, [args.text], packer.encode_labels(labels), 16)[0][0]
    print(json.dumps({l: float(s) for l, s in zip(labels, scores)}))


def cmd_train(args):
    """Training steps as gliznet takes them: AdamW (no decay on biases and LayerNorm),
    dropout on, stable BCE averaged per example, clipping at 1.0, batch 16."""
    torch.manual_seed(0)
    model = GliZNetReference(args.model, similarity="cosine", projection_dim=256).train().to(args.device)
    packer = Packer(args.model, max_length=args.max_length, max_label_tokens=12, min_text_tokens=24)
    rows = [json.loads(l) for l in open(args.train, encoding="utf-8")][: args.steps * 16]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n or n == "log_scale"]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n or n == "log_scale")]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=5e-5)
    tokens = 0
    start = time.perf_counter()
    for step in range(args.steps):
        chunks, targets = [], []
        for r in rows[step * 16: (step + 1) * 16]:
            names = r["labels"] + r["not_labels"]
            for seq, positions, indices in packer.encode(r["text"], packer.encode_labels(names)):
                chunks.append((seq, positions, indices))
                targets.append([1.0 if i < len(r["labels"]) else 0.0 for i in indices])
        ids, mask, label_rows, label_mask, max_labels = collate(chunks, packer.pad)
        tokens += int(mask.sum())
        ids, mask, label_rows, label_mask = (t.to(args.device) for t in (ids, mask, label_rows, label_mask))
        y = torch.zeros_like(label_mask)
        for b, t in enumerate(targets):
            y[b, : len(t)] = torch.tensor(t)
        logits = model(ids, mask, label_rows, max_labels)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        loss = ((loss * label_mask).sum(1) / label_mask.sum(1).clamp(min=1)).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    if args.device != "cpu":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    print(json.dumps({"examples_per_second": args.steps * 16 / elapsed, "mean_tokens": tokens / (args.steps * 16)}))


def cmd_cross_encoder(args):
    """Pairs (text, "This example is {label}.") through a cross-encoder, 16 pairs a batch:
    per-pair cost, so a text with K labels costs K pairs. Random weights: speed does not depend
    on them. Token ids come from the MiniLM tokenizer (only the lengths matter)."""
    packer = Packer(args.model)
    hypothesis = packer.ids("This example is sports.")
    models = {
        "bart-large-mnli shape": BartForSequenceClassification(BartConfig(
            vocab_size=50265, d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
            decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096, num_labels=3,
            # BART pools at its end-of-sequence token: the MiniLM ids' [SEP] plays that role here.
            bos_token_id=packer.cls, eos_token_id=packer.sep, pad_token_id=packer.pad)),
        "MiniLM-L6 cross-encoder": BertForSequenceClassification(BertConfig(
            vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
            num_labels=3)),
    }
    for path in args.texts:
        texts = read_texts(path)[:16]
        pairs = [[packer.cls] + packer.ids(t)[: 512 - len(hypothesis) - 3] + [packer.sep, packer.sep] + hypothesis + [packer.sep]
                 for t in texts]
        seq_len = max(len(p) for p in pairs)
        ids = torch.tensor([p + [packer.pad] * (seq_len - len(p)) for p in pairs])
        mask = (ids != packer.pad).long()
        for name, model in models.items():
            model.eval()
            rates = []
            with torch.inference_mode():
                for _ in range(args.reps):
                    start = time.perf_counter()
                    model(input_ids=ids, attention_mask=mask)
                    rates.append(len(pairs) / (time.perf_counter() - start))
            pairs_per_second = statistics.median(rates)
            print(json.dumps({"texts": path, "model": name, "pairs_per_second": pairs_per_second,
                              "texts_per_second": {k: pairs_per_second / k for k in (5, 20, 50)}}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict")
    p.add_argument("model")
    p.add_argument("labels")
    p.add_argument("texts", nargs="+")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quantize", action="store_true", help="int8 dense layers (torch.ao quantize_dynamic)")
    p.add_argument("--batches", default="16,1", help="comma-separated batch sizes")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    p = sub.add_parser("predict-file")
    p.add_argument("model")
    p.add_argument("labels")
    p.add_argument("texts")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--batch", type=int, default=16)
    p = sub.add_parser("predict-one")
    p.add_argument("model")
    p.add_argument("text")
    p.add_argument("labels")
    p = sub.add_parser("train")
    p.add_argument("model")
    p.add_argument("train")
    p.add_argument("--max-length", type=int, required=True)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    p = sub.add_parser("cross-encoder")
    p.add_argument("model")
    p.add_argument("texts", nargs="+")
    p.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    {"predict": cmd_predict, "predict-file": cmd_predict_file, "predict-one": cmd_predict_one, "train": cmd_train, "cross-encoder": cmd_cross_encoder}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

"""The peers of the headline benchmark (bench/headline.py): all-MiniLM-L6-v2 run as a
sentence-transformers-style bi-encoder, by PyTorch and by ONNX Runtime.

Both ways do the same work: texts tokenized with `tokenizers` (the backbone's tokenizer.json,
cut at 128 tokens, padded to the batch's longest), sorted by length as sentence-transformers
sorts them, 16 texts a batch; each label read once as "This text is about {label}."; mean
pooling over the attention mask, unit length, cosine; one JSON line per text, in input order,
with every label's cosine and the top label. The ONNX way imports no torch: only numpy,
onnxruntime and tokenizers, as fastembed or a speed-minded user would run it.

    python bench/biencoder.py predict --backend torch MODEL_DIR LABELS TEXTS
    python bench/biencoder.py predict --backend ort --onnx MODEL.onnx MODEL_DIR LABELS TEXTS
    python bench/biencoder.py export MODEL_DIR OUT_DIR     # OUT_DIR/minilm.onnx, minilm-int8.onnx, minilm.json
    python bench/biencoder.py versions

`export` writes the encoder with `torch.onnx.export(dynamo=False, opset_version=17)` (dynamic
batch and sequence axes; output last_hidden_state), then the dynamic int8 copy
(`quantize_dynamic(weight_type=QInt8, per_channel=True)`), and checks both against PyTorch on a
few of bench's texts: the f32 model's pooled embeddings must equal PyTorch's within 1e-4
(exit 1 if not); the int8 model's cosine scores are compared and reported.
"""

import argparse
import json
import pathlib
import sys

TEMPLATE = "This text is about {}."
MAX_LENGTH = 128
BATCH = 16
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def read_labels(path):
    """bench's label files: one label a line (blank lines and # comments skipped, as gliznet does)."""
    return [l.strip() for l in open(path, encoding="utf-8") if l.strip() and not l.lstrip().startswith("#")]


def read_texts(path):
    return [json.loads(l)["text"] for l in open(path, encoding="utf-8") if l.strip()]


def tokenizer(model_dir):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(pathlib.Path(model_dir) / "tokenizer.json"))
    tok.enable_truncation(MAX_LENGTH)
    tok.no_padding()
    return tok


def batches(tok, texts):
    """(indices, ids, mask) per batch of 16: every text tokenized once, the texts sorted by
    token count (longest first, as sentence-transformers sorts), each batch padded to its longest."""
    import numpy as np
    pad = tok.token_to_id("[PAD]")
    encoded = [e.ids for e in tok.encode_batch(texts, add_special_tokens=True)]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    for start in range(0, len(order), BATCH):
        indices = order[start: start + BATCH]
        width = len(encoded[indices[0]])
        ids = np.full((len(indices), width), pad, dtype=np.int64)
        mask = np.zeros((len(indices), width), dtype=np.int64)
        for row, i in enumerate(indices):
            ids[row, : len(encoded[i])] = encoded[i]
            mask[row, : len(encoded[i])] = 1
        yield indices, ids, mask


class TorchEncoder:
    def __init__(self, model_dir):
        import torch
        from transformers import AutoModel
        self.torch = torch
        self.model = AutoModel.from_pretrained(str(model_dir)).eval()

    def __call__(self, ids, mask):
        """Mean-pooled, unit-length embeddings as a numpy array."""
        torch = self.torch
        with torch.inference_mode():
            ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
            hidden = self.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()


class OrtEncoder:
    def __init__(self, onnx_path):
        import numpy as np
        import onnxruntime as ort
        self.np = np
        # Default session options (all graph optimizations, one intra-op thread per physical core),
        # as fastembed creates its sessions.
        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def __call__(self, ids, mask):
        np = self.np
        hidden = self.session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask,
                                                           "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[..., None].astype(hidden.dtype)
        pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def embed(encoder, tok, texts):
    import numpy as np
    out = None
    for indices, ids, mask in batches(tok, texts):
        e = encoder(ids, mask)
        if out is None:
            out = np.zeros((len(texts), e.shape[1]), dtype=np.float32)
        out[indices] = e
    return out


def cmd_predict(args):
    encoder = TorchEncoder(args.model) if args.backend == "torch" else OrtEncoder(args.onnx)
    tok = tokenizer(args.model)
    labels = read_labels(args.labels)
    label_vectors = embed(encoder, tok, [TEMPLATE.format(l) for l in labels])
    texts = read_texts(args.texts)
    scores = embed(encoder, tok, texts) @ label_vectors.T
    out = sys.stdout
    for row in scores:
        top = int(row.argmax())
        out.write(json.dumps({"label": labels[top], "score": float(row[top]),
                              "scores": [round(float(s), 7) for s in row]}) + "\n")


def check_texts():
    bench = pathlib.Path(__file__).resolve().parent
    texts = read_texts(bench / "texts-short.jsonl")[:6] + read_texts(bench / "texts-long.jsonl")[:3]
    labels = read_labels(bench / "labels.txt")[:20]
    return texts, labels


def cmd_export(args):
    import numpy as np
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    f32, int8 = out / "minilm.onnx", out / "minilm-int8.onnx"
    weights = pathlib.Path(args.model) / "model.safetensors"

    class LastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            # Eager attention: what the tracing exporter records as plain ops.
            self.bert = AutoModel.from_pretrained(str(args.model), attn_implementation="eager").eval()

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    tok = tokenizer(args.model)
    _, ids, mask = next(batches(tok, ["a first example text for the export", "a second one"]))
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, "last_hidden_state")}
    with torch.inference_mode():
        torch.onnx.export(LastHidden(), (ids, mask, torch.zeros_like(ids)), str(f32), dynamo=False, opset_version=17,
                          input_names=list(INPUT_NAMES), output_names=["last_hidden_state"], dynamic_axes=axes)
    quantize_dynamic(str(f32), str(int8), weight_type=QuantType.QInt8, per_channel=True)

    # The check: the exported model against PyTorch (the benchmark's own TorchEncoder) on a few texts.
    texts, labels = check_texts()
    reference, onnx_f32, onnx_int8 = TorchEncoder(args.model), OrtEncoder(f32), OrtEncoder(int8)
    prompts = [TEMPLATE.format(l) for l in labels]
    emb = {name: (embed(e, tok, texts), embed(e, tok, prompts))
           for name, e in (("torch", reference), ("f32", onnx_f32), ("int8", onnx_int8))}
    cos = {name: t @ l.T for name, (t, l) in emb.items()}
    top = {name: c.argmax(1) for name, c in cos.items()}
    result = {
        "source": str(weights.resolve()), "source_bytes": weights.stat().st_size, "versions": versions(),
        "check_texts": len(texts), "check_labels": len(labels),
        "f32_max_abs_embedding_diff": float(max(np.abs(emb["f32"][i] - emb["torch"][i]).max() for i in (0, 1))),
        "f32_max_abs_cosine_diff": float(np.abs(cos["f32"] - cos["torch"]).max()),
        "f32_top_label_agrees": int((top["f32"] == top["torch"]).sum()),
        "int8_max_abs_embedding_diff": float(max(np.abs(emb["int8"][i] - emb["torch"][i]).max() for i in (0, 1))),
        "int8_max_abs_cosine_diff": float(np.abs(cos["int8"] - cos["torch"]).max()),
        "int8_mean_abs_cosine_diff": float(np.abs(cos["int8"] - cos["torch"]).mean()),
        "int8_top_label_agrees": int((top["int8"] == top["torch"]).sum()),
        "f32_bytes": f32.stat().st_size, "int8_bytes": int8.stat().st_size,
    }
    ok = result["f32_max_abs_embedding_diff"] <= 1e-4
    result["f32_within_1e-4"] = ok
    (out / "minilm.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    if not ok:
        for path in (f32, int8, out / "minilm.json"):
            path.unlink()
        sys.exit(f"the ONNX export differs from PyTorch by {result['f32_max_abs_embedding_diff']:.2e} (bound 1e-4)")


def versions():
    import importlib.metadata as md
    found = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = None
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict")
    p.add_argument("--backend", choices=("torch", "ort"), required=True)
    p.add_argument("--onnx", help="the ONNX model (--backend ort)")
    p.add_argument("model", help="the backbone's directory (tokenizer.json; the weights for --backend torch)")
    p.add_argument("labels")
    p.add_argument("texts")
    p = sub.add_parser("export")
    p.add_argument("model")
    p.add_argument("out")
    sub.add_parser("versions")
    args = parser.parse_args()
    if args.cmd == "predict" and args.backend == "ort" and not args.onnx:
        parser.error("--backend ort needs --onnx")
    if args.cmd == "versions":
        print(json.dumps(versions()))
        return
    {"predict": cmd_predict, "export": cmd_export}[args.cmd](args)


if __name__ == "__main__":
    main()

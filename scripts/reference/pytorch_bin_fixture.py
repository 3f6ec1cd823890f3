"""A tiny BERT saved as `pytorch_model.bin` the old way (`bert.` prefix, LayerNorm
`gamma`/`beta`), with its hidden states for fixed token ids, for the loader test
`tests/pytorch_bin.rs`. The vocabulary size matches gliznet's tiny test tokenizer.

    .venv/bin/python scripts/reference/pytorch_bin_fixture.py
"""

import json
import pathlib

import torch
from transformers import BertConfig, BertModel

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "tiny-pytorch-bert"
TINY_VOCAB_SIZE = 120  # gliznet::testing::tiny_vocab().len()


def main():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=TINY_VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, hidden_act="gelu")
    model = BertModel(config, add_pooling_layer=False).eval()
    for p in model.parameters():  # BERT's init leaves LayerNorm at 1/0; perturb so the test sees them
        p.data += 0.05 * torch.randn_like(p)
    state = {}
    for name, tensor in model.state_dict().items():
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state[f"bert.{name}"] = tensor.clone()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(state, OUT / "pytorch_model.bin")
    config_json = config.to_dict()
    config_json["architectures"] = ["BertForMaskedLM"]
    (OUT / "config.json").write_text(json.dumps(config_json, indent=2, default=str) + "\n")
    ids = [[2, 10, 11, 12, 3, 20, 3], [2, 15, 16, 3, 0, 0, 0]]
    mask = [[1] * 7, [1, 1, 1, 1, 0, 0, 0]]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    (OUT / "reference.json").write_text(json.dumps({
        "made_by": "scripts/reference/pytorch_bin_fixture.py",
        "input_ids": ids, "attention_mask": mask,
        "last_hidden_state": [[[round(float(x), 6) for x in row] for row in seq] for seq in hidden],
    }) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Packages a backbone as an untrained gliznet model with a chosen attention mode, for the
suite rows "untrained isolated" and "untrained separate" of docs/experiments.md.

    scripts/untrained-model.py BACKBONE_DIR OUT_DIR --label-attention isolated|separate|full \
        [--label-template "This text is about {label}."]

The model is what gliznet itself gives a backbone with no head (cosine over the mean-pooled
states, no projection, logit scale 10), plus the `label_attention` of the gliznet section
(and shared label positions) and, if given, the `label_template` each label is read in. Standard library only: the safetensors file is the backbone's
with one f32 tensor appended. OUT_DIR must not exist.
"""
import argparse
import json
import math
import struct
from pathlib import Path

from model_files import read_safetensors, write_model_dir

LOG_SCALE = "gliznet.log_logit_scale"
INITIAL_LOGIT_SCALE = 10.0  # src/model/head.rs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backbone", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--label-attention", choices=["full", "isolated", "separate", "independent"], required=True)
    parser.add_argument("--label-template", help='e.g. "This text is about {label}."; an opening '
                        '[CLS] is spelled <s> for an MPNet backbone')
    args = parser.parse_args()
    if args.label_template is not None and args.label_template.count("{label}") != 1:
        parser.error("--label-template must contain {label} exactly once")
    if args.out.exists():
        parser.error(f"{args.out} exists; choose a new directory")

    config = json.loads((args.backbone / "config.json").read_text())
    if "gliznet" in config:
        parser.error(f"{args.backbone}/config.json already has a gliznet section")
    config["gliznet"] = {
        "format_version": 1,
        "similarity": "cosine",
        "projection_dim": None,
        "max_length": min(128, config.get("max_position_embeddings", 512)),
        "max_label_tokens": 16,
        "min_text_tokens": 32,
        # The separator as the encoder family's vocabulary spells it (src/tokenizer.rs).
        "label_separator": "</s>" if config.get("model_type") == "mpnet" else "[SEP]",
        "readout": "mean",
        "shared_label_positions": args.label_attention != "full",
        "label_attention": args.label_attention,
    }
    if args.label_template is not None:
        config["gliznet"]["label_template"] = args.label_template

    header, data = read_safetensors(args.backbone / "model.safetensors")
    if LOG_SCALE in header:
        parser.error(f"{args.backbone}/model.safetensors already has {LOG_SCALE}")
    header[LOG_SCALE] = {"dtype": "F32", "shape": [1], "data_offsets": [len(data), len(data) + 4]}
    scale = struct.pack("<f", math.log(INITIAL_LOGIT_SCALE))
    write_model_dir(args.out, header, [data, scale], args.backbone, config)


if __name__ == "__main__":
    main()

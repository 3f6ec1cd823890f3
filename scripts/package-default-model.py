#!/usr/bin/env python3
"""Packages a trained model directory as the built-in default model (assets/default-model):
weights stored as f16 (half the size; gliznet computes in f32), the calibrated multi-label
threshold written into the gliznet section, tokenizer copied.

    python scripts/package-default-model.py RUN_DIR --threshold T [--out assets/default-model]

Needs numpy and safetensors (scripts/reference/requirements.txt).
"""

import argparse
import json
import pathlib
import shutil

import numpy as np
from safetensors.numpy import load_file, save_file


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[1] / "assets" / "default-model"))
    args = parser.parse_args()
    src, out = pathlib.Path(args.run_dir), pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    config["gliznet"]["threshold"] = args.threshold
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tensors = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in load_file(src / "model.safetensors").items()}
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    shutil.copyfile(src / "tokenizer.json", out / "tokenizer.json")
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"wrote {out} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()

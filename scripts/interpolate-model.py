#!/usr/bin/env python3
"""Interpolates the weights of gliznet models of the same shape (WiSE-FT: Wortsman et al.,
"Robust fine-tuning of zero-shot models", 2022): every float tensor becomes
(1 - alpha) * START + alpha * TUNED; other tensors, the config and the tokenizer are the first
TUNED's. Several TUNED directories are averaged uniformly first (a "model soup" of runs of one
recipe, e.g. its seeds: Wortsman et al., "Model soups", 2022).

    scripts/interpolate-model.py START_DIR TUNED_DIR [TUNED_DIR ...] OUT_DIR --alpha 0.5

START is typically the untrained model (scripts/untrained-model.py) and TUNED models trained
from it with the same architecture. OUT_DIR must not exist. Needs numpy.
"""
import argparse
from pathlib import Path

import numpy as np
from model_files import read_safetensors, write_model_dir

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64, "I32": np.int32}


def tensor(header: dict, data: bytes, name: str) -> np.ndarray:
    info = header[name]
    dtype = DTYPES.get(info["dtype"])
    if dtype is None:
        raise SystemExit(f"{name}: dtype {info['dtype']} is not supported")
    start, end = info["data_offsets"]
    return np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("start", type=Path)
    parser.add_argument("tuned", type=Path, nargs="+")
    parser.add_argument("out", type=Path)
    parser.add_argument("--alpha", type=float, required=True, help="weight of TUNED, 0..1")
    args = parser.parse_args()
    if not 0.0 <= args.alpha <= 1.0:
        parser.error("--alpha must be within 0..1")
    if args.out.exists():
        parser.error(f"{args.out} exists; choose a new directory")

    start_header, start_data = read_safetensors(args.start / "model.safetensors")
    tuned_files = [read_safetensors(dir / "model.safetensors") for dir in args.tuned]
    tuned_header, tuned_data = tuned_files[0]
    names = sorted(n for n in tuned_header if n != "__metadata__")
    for dir, (header, _) in zip([args.start, *args.tuned[1:]], [(start_header, None), *tuned_files[1:]]):
        missing = [n for n in names if n not in header]
        if missing:
            raise SystemExit(f"{dir}: no tensor {missing[0]} ({len(missing)} missing in all)")
    for dir, (header, _) in zip(args.tuned[1:], tuned_files[1:]):
        extra = sorted(n for n in header if n != "__metadata__" and n not in tuned_header)
        if extra:
            raise SystemExit(f"{dir}: tensor {extra[0]} is not in {args.tuned[0]} ({len(extra)} such in all)")
        if (dir / "config.json").read_text() != (args.tuned[0] / "config.json").read_text():
            raise SystemExit(f"{dir}/config.json differs from {args.tuned[0]}/config.json: not runs of one model")

    out_header, chunks, offset = {}, [], 0
    for name in names:
        tuned = tensor(tuned_header, tuned_data, name)
        if tuned.dtype.kind == "f":
            souped = tuned.astype(np.float32)
            for dir, (header, data) in zip(args.tuned[1:], tuned_files[1:]):
                other = tensor(header, data, name)
                if other.shape != tuned.shape:
                    raise SystemExit(f"{name}: shape {other.shape} in {dir}, {tuned.shape} in {args.tuned[0]}")
                souped = souped + other.astype(np.float32)
            souped = souped / len(tuned_files)
            start = tensor(start_header, start_data, name)
            if start.shape != tuned.shape:
                raise SystemExit(f"{name}: shape {start.shape} in START, {tuned.shape} in TUNED")
            mixed = (1.0 - args.alpha) * start.astype(np.float32) + args.alpha * souped
            tuned = mixed.astype(tuned.dtype)
        raw = tuned.tobytes()
        out_header[name] = {
            "dtype": tuned_header[name]["dtype"],
            "shape": list(tuned.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    write_model_dir(args.out, out_header, chunks, args.tuned[0])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A trained model stored as a small delta over the backbone it was trained from, and the
model rebuilt from the two, byte for byte:

    scripts/model-delta.py make  --base BACKBONE_DIR --model MODEL_DIR --out DELTA_DIR [--rank 128]
    scripts/model-delta.py apply --base BACKBONE_DIR --delta DELTA_DIR --out MODEL_DIR

`make` writes DELTA_DIR: each large matrix's change from the backbone (trained minus base) as
a rank-R product A·B of int8 factors (A scaled per row, B per column, from the truncated SVD),
every other tensor (biases, norms, the head, tensors the backbone lacks) whole in its own
dtype, the model's config.json, and manifest.json (the backbone's sha256, the tensors' order
and shapes, and the sha256 of the model `apply` rebuilds, which `make` runs to find it).

`apply` is exact and the same on every machine: the factors hold integers of at most 127 in
magnitude and R ≤ 1024, so every partial sum of A·B is an integer below 2^24 that float32
holds exactly, in any summation order; the scales and the backbone are then applied by single
correctly rounded float32 operations. It refuses a backbone whose sha256 is not the
manifest's and a result whose sha256 is not the manifest's. Needs numpy.
"""
import argparse
import hashlib
import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I8": np.int8, "F64": np.float64,
          "I64": np.int64, "I32": np.int32}
# Matrices with both sides at least this long are stored as factors; smaller ones whole.
MIN_FACTORED_SIDE = 256
MAX_RANK = 1024  # 1024 · 127² < 2^24: exact float32 sums


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_tensors(path: Path) -> tuple[dict, dict]:
    """(header without __metadata__, name -> numpy array), in the file's order."""
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    header.pop("__metadata__", None)
    tensors = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        dtype = DTYPES.get(info["dtype"])
        if dtype is None:
            sys.exit(f"{path}: tensor {name} has dtype {info['dtype']}, which this script does not read")
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"])
    return header, tensors


def write_tensors(path: Path, tensors: dict) -> None:
    """A safetensors file of `tensors` in their order (8-byte aligned header)."""
    assert sys.byteorder == "little", "safetensors data is little-endian"
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int8): "I8",
             np.dtype(np.int64): "I64", np.dtype(np.int32): "I32"}
    header, offset = {}, 0
    for name, array in tensors.items():
        size = array.nbytes
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for array in tensors.values():
            f.write(np.ascontiguousarray(array).tobytes())


def factor(delta: np.ndarray, rank: int):
    """int8 factors A (rows × rank, scaled per row) and B (rank × cols, scaled per column)."""
    u, s, vt = np.linalg.svd(delta.astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    a = u[:, :rank] * root
    b = root[:, None] * vt[:rank]
    a_scale = np.abs(a).max(axis=1) / 127.0
    b_scale = np.abs(b).max(axis=0) / 127.0
    a_scale[a_scale == 0] = 1.0
    b_scale[b_scale == 0] = 1.0
    qa = np.clip(np.rint(a / a_scale[:, None]), -127, 127).astype(np.int8)
    qb = np.clip(np.rint(b / b_scale[None, :]), -127, 127).astype(np.int8)
    return qa, a_scale.astype(np.float32), qb, b_scale.astype(np.float32)


def product(qa, a_scale, qb, b_scale) -> np.ndarray:
    """A·B as float32: exact integer sums, then the row and column scales."""
    sums = qa.astype(np.float32) @ qb.astype(np.float32)
    return (sums * a_scale[:, None]) * b_scale[None, :]


def rebuild(base: dict, delta: dict, manifest: dict) -> dict:
    out = {}
    for entry in manifest["tensors"]:
        name, kind = entry["name"], entry["kind"]
        if kind == "whole":
            out[name] = delta[name]
        else:
            change = product(delta[name + ".a"], delta[name + ".a_scale"],
                             delta[name + ".b"], delta[name + ".b_scale"])
            out[name] = (base[name].astype(np.float32) + change).astype(np.dtype(entry["dtype"]))
    return out


def apply(base_dir: Path, delta_dir: Path, out: Path) -> tuple[str, Path]:
    """Rebuilds the model into OUT.tmp; returns its model.safetensors' sha256 and OUT.tmp."""
    manifest = json.loads((delta_dir / "manifest.json").read_text())
    base_file = base_dir / "model.safetensors"
    if sha256(base_file) != manifest["base_sha256"]:
        sys.exit(f"{base_file}: sha256 is not the backbone's this delta was made over "
                 f"({manifest['base']}, {manifest['base_sha256']})")
    _, base = read_tensors(base_file)
    _, delta = read_tensors(delta_dir / "delta.safetensors")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_tensors(tmp / "model.safetensors", rebuild(base, delta, manifest))
    shutil.copy(delta_dir / "config.json", tmp / "config.json")
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (delta_dir / name).exists():
            shutil.copy(delta_dir / name, tmp / name)
        elif (base_dir / name).exists():
            shutil.copy(base_dir / name, tmp / name)
    return sha256(tmp / "model.safetensors"), tmp


def make(base_dir: Path, model_dir: Path, out: Path, rank: int) -> None:
    if not 1 <= rank <= MAX_RANK:
        sys.exit(f"--rank must be in 1..{MAX_RANK}")
    _, base = read_tensors(base_dir / "model.safetensors")
    _, model = read_tensors(model_dir / "model.safetensors")
    stored, entries = {}, []
    for name, array in model.items():
        entry = {"name": name, "dtype": array.dtype.name, "shape": list(array.shape)}
        same = name in base and base[name].shape == array.shape
        if same and array.ndim == 2 and min(array.shape) >= MIN_FACTORED_SIDE:
            qa, sa, qb, sb = factor(array.astype(np.float64) - base[name].astype(np.float64), rank)
            stored.update({name + ".a": qa, name + ".a_scale": sa, name + ".b": qb, name + ".b_scale": sb})
            entry["kind"] = "factored"
        else:
            stored[name] = array
            entry["kind"] = "whole"
        entries.append(entry)
    out.mkdir(parents=True, exist_ok=False)
    write_tensors(out / "delta.safetensors", stored)
    shutil.copy(model_dir / "config.json", out / "config.json")
    for name in ("tokenizer.json", "vocab.txt"):
        if (model_dir / name).exists() and not (
            (base_dir / name).exists() and sha256(base_dir / name) == sha256(model_dir / name)
        ):
            shutil.copy(model_dir / name, out / name)
    manifest = {
        "base": base_dir.name,
        "base_sha256": sha256(base_dir / "model.safetensors"),
        "rank": rank,
        "tensors": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    result_sha, tmp = apply(base_dir, out, out.with_name(out.name + ".check"))
    _, rebuilt = read_tensors(tmp / "model.safetensors")
    worst = max(float(np.abs(rebuilt[n].astype(np.float32) - model[n].astype(np.float32)).max()) for n in model)
    shutil.rmtree(tmp)
    manifest["result_sha256"] = result_sha
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir())
    print(json.dumps({"delta_dir": str(out), "bytes": size, "rank": rank,
                      "max_abs_weight_error": worst, "result_sha256": result_sha}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("--base", type=Path, required=True)
    m.add_argument("--model", type=Path, required=True)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--rank", type=int, default=128)
    a = sub.add_parser("apply")
    a.add_argument("--base", type=Path, required=True)
    a.add_argument("--delta", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "make":
        make(args.base, args.model, args.out, args.rank)
    else:
        if args.out.exists():
            sys.exit(f"{args.out} exists; choose a new directory")
        manifest = json.loads((args.delta / "manifest.json").read_text())
        result_sha, tmp = apply(args.base, args.delta, args.out)
        if result_sha != manifest["result_sha256"]:
            shutil.rmtree(tmp)
            sys.exit(f"the rebuilt model's sha256 is {result_sha}, not the manifest's "
                     f"{manifest['result_sha256']}")
        tmp.rename(args.out)
        print(f"model ready: {args.out} (sha256 {result_sha})", file=sys.stderr)


if __name__ == "__main__":
    main()

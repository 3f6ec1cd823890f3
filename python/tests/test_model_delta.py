"""scripts/model-delta.py, which stores a released model as a delta over its backbone
(scripts/fetch-model.sh rebuilds it): on small random tensors, `make` then `apply` rebuilds
the same bytes as `make` recorded, a change of rank ≤ R comes back to within the int8
factors' rounding, tensors the backbone lacks or small ones come back exactly, and a wrong
backbone, a changed delta or an existing output are refused."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "model-delta.py"


def write_safetensors(path, tensors):
    codes = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    header, offset = {}, 0
    for name, array in tensors.items():
        header[name] = {"dtype": codes[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    encoded = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for array in tensors.values():
            f.write(array.tobytes())


def read_safetensors(path):
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    kinds = {"F32": np.float32, "I64": np.int64}
    return {name: np.frombuffer(data[8 + n + i["data_offsets"][0]:8 + n + i["data_offsets"][1]],
                                dtype=kinds[i["dtype"]]).reshape(i["shape"])
            for name, i in header.items() if name != "__metadata__"}


def model_dir(path, tensors):
    path.mkdir()
    write_safetensors(path / "model.safetensors", tensors)
    (path / "config.json").write_text(json.dumps({"model_type": "test", "gliznet": {}}))
    (path / "tokenizer.json").write_text("{}")
    return path


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


@pytest.fixture
def dirs(tmp_path):
    rng = np.random.default_rng(7)
    base = {
        "positions": np.arange(12, dtype=np.int64),
        "layer.weight": rng.standard_normal((300, 260)).astype(np.float32),
        "layer.bias": rng.standard_normal(260).astype(np.float32),
        "small.weight": rng.standard_normal((40, 300)).astype(np.float32),
    }
    change = (rng.standard_normal((300, 6)) @ rng.standard_normal((6, 260)) * 1e-3).astype(np.float32)
    trained = {
        "layer.weight": base["layer.weight"] + change,
        "layer.bias": base["layer.bias"] + 0.5,
        "small.weight": base["small.weight"] * 2,
        "head.scale": np.array([2.5], dtype=np.float32),
    }
    return model_dir(tmp_path / "base", base), model_dir(tmp_path / "trained", trained), trained, tmp_path


def test_make_then_apply_rebuilds_the_recorded_bytes(dirs):
    base, trained_dir, trained, tmp = dirs
    made = run("make", "--base", base, "--model", trained_dir, "--out", tmp / "delta", "--rank", 8)
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    manifest = json.loads((tmp / "delta" / "manifest.json").read_text())
    assert report["result_sha256"] == manifest["result_sha256"]
    assert [t["kind"] for t in manifest["tensors"]] == ["factored", "whole", "whole", "whole"]

    applied = run("apply", "--base", base, "--delta", tmp / "delta", "--out", tmp / "rebuilt")
    assert applied.returncode == 0, applied.stderr
    rebuilt = read_safetensors(tmp / "rebuilt" / "model.safetensors")
    assert list(rebuilt) == list(trained)
    for name in ("layer.bias", "small.weight", "head.scale"):
        assert np.array_equal(rebuilt[name], trained[name]), name
    # The change has rank 6 ≤ 8: what is lost is the int8 rounding of the factors, a few
    # hundredths of the change itself.
    change = trained["layer.weight"] - read_safetensors(base / "model.safetensors")["layer.weight"]
    error = np.abs(rebuilt["layer.weight"] - trained["layer.weight"]).max()
    assert error < 0.03 * np.abs(change).max(), (error, np.abs(change).max())
    assert (tmp / "rebuilt" / "config.json").read_text() == (trained_dir / "config.json").read_text()

    again = run("apply", "--base", base, "--delta", tmp / "delta", "--out", tmp / "rebuilt")
    assert again.returncode != 0 and "exists" in again.stderr


def test_a_wrong_backbone_or_a_changed_delta_is_refused(dirs):
    base, trained_dir, _, tmp = dirs
    assert run("make", "--base", base, "--model", trained_dir, "--out", tmp / "delta", "--rank", 4).returncode == 0

    other = model_dir(tmp / "other", {"layer.weight": np.zeros((300, 260), dtype=np.float32)})
    wrong = run("apply", "--base", other, "--delta", tmp / "delta", "--out", tmp / "out1")
    assert wrong.returncode != 0 and "sha256" in wrong.stderr
    assert not (tmp / "out1").exists()

    delta_file = tmp / "delta" / "delta.safetensors"
    data = bytearray(delta_file.read_bytes())
    data[-1] ^= 0xFF
    delta_file.write_bytes(bytes(data))
    changed = run("apply", "--base", base, "--delta", tmp / "delta", "--out", tmp / "out2")
    assert changed.returncode != 0 and "not the manifest's" in changed.stderr
    assert not (tmp / "out2").exists() and not (tmp / "out2.tmp").exists()

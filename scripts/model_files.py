"""Reading and writing gliznet model directories from the scripts, standard library only:
a safetensors file is an 8-byte little-endian header length, a JSON header and the data."""
import json
import shutil
import struct
from pathlib import Path


def read_safetensors(path: Path) -> tuple[dict, bytes]:
    """The header (name -> dtype, shape, data_offsets) and the data block."""
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        return header, f.read()


def write_model_dir(out: Path, header: dict, chunks: list[bytes], files_from: Path, config=None):
    """Writes OUT (which must not exist) through OUT.tmp: model.safetensors from `header` and
    the data `chunks` in order, config.json (`config`, or FILES_FROM's), and FILES_FROM's
    tokenizer.json and vocab.txt."""
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for chunk in chunks:
            f.write(chunk)
    if config is not None:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    names = ("tokenizer.json", "vocab.txt") if config is not None else ("config.json", "tokenizer.json", "vocab.txt")
    for name in names:
        if (files_from / name).exists():
            shutil.copy(files_from / name, tmp / name)
    tmp.rename(out)

"""What the experiment scripts share: their command line (TRAIN_IN TRAIN_OUT --seed), a wheel
fetched by exact version and checked by sha256, and rows shuffled into a training file."""

import argparse
import hashlib
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ROOT / "data" / "generated" / "sources"
sys.path.insert(0, str(ROOT / "scripts" / "corpus"))
import build  # noqa: E402  (the corpus builder: example, read_wordnet, write_jsonl, …)


def arguments(description, seed, wordnet=False, extra=None):
    """Parses TRAIN_IN TRAIN_OUT [--seed SEED], with WORDNET also [--wordnet DIR], and the
    options EXTRA adds to the parser; stops with an error if TRAIN_OUT exists, before any work."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train_in", type=pathlib.Path)
    parser.add_argument("train_out", type=pathlib.Path)
    parser.add_argument("--seed", type=int, default=seed)
    if wordnet:
        parser.add_argument("--wordnet", type=pathlib.Path, default=pathlib.Path("/usr/share/wordnet"))
    if extra:
        extra(parser)
    args = parser.parse_args()
    if args.train_out.exists():
        sys.exit(f"error: {args.train_out} exists")
    return args


def wheel(sources, spec, file_name, sha256, sdist=False):
    """The wheel SPEC ("name==version") in SOURCES, downloaded once with pip (no dependencies),
    or with SDIST its source archive; stops with an error if its sha256 is not SHA256."""
    path = sources / file_name
    if not path.is_file():
        kind = "--no-binary=:all:" if sdist else "--only-binary=:all:"
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", kind,
                        spec, "-d", str(sources)], check=True)
        if not path.is_file():
            sys.exit(f"error: pip downloaded {spec}, but not as {path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        sys.exit(f"error: sha256 of {path} is {digest}, expected {sha256}")
    return path


def add_to_training_file(train_in, train_out, rows, rng):
    """Writes TRAIN_IN's examples and ROWS, shuffled together by RNG, to TRAIN_OUT; returns how
    many examples it wrote."""
    with open(train_in, encoding="utf-8") as f:
        examples = [json.loads(line) for line in f] + rows
    rng.shuffle(examples)
    build.write_jsonl(train_out, examples)
    return len(examples)

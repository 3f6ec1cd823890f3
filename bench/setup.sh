#!/usr/bin/env bash
# Creates bench/.venv with the requirements of the PyTorch reference and of the headline
# benchmark's peers (torch, onnx, onnxruntime, tokenizers from PyPI: ~3 minutes
# and ~5.6 GB here).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ -x "$here/.venv/bin/python" ]] || python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet -r "$here/requirements.txt"
echo "ready: $here/.venv/bin/python" >&2

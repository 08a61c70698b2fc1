#!/usr/bin/env bash
# Bounded GPU check of xhmm: install the CUDA build of JAX, then time smooth
# at K=10,650 for a few hundred steps and report device peak memory.
#
# Usage (repository root, on a machine with an NVIDIA GPU):
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# With no network, put the CUDA wheels (jax, jaxlib, jax-cuda12-plugin,
# jax-cuda12-pjrt and the nvidia-* wheels) in .whl/ first: they are
# installed from there without an index.
set -euo pipefail
OUT=${1:-benchmarks/results}
PY=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu}

test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
if [ -d .whl ]; then
    "$VENV/bin/python" -m pip install -q --no-index --find-links .whl "jax[cuda12]"
else
    "$VENV/bin/python" -m pip install -q "jax[cuda12]>=0.4.30,<0.13"
fi
"$VENV/bin/python" -m pip install -q -e .
"$VENV/bin/python" -c "import jax; d = jax.devices(); print(d); assert d[0].platform == 'gpu', 'no GPU visible to JAX'"

# XLA_PYTHON_CLIENT_PREALLOCATE=false (set by `import xhmm`) makes the
# reported device peak the memory xhmm really uses (about one chunk).
timeout 540 "$VENV/bin/python" -m xhmm bench --sweep T --sweep-T 500,1500 -K 10650 \
    --chunk-size 500 --repeats 2 --baselines numpy --no-save --no-plots \
    --out "$OUT" --name gpu-K10650

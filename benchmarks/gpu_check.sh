#!/usr/bin/env bash
# Bounded GPU check of xhmm, in one call: the numerics tests on the GPU, then
# the harness at the seed's K on the GPU (dense and structured models).
#
# Usage (repository root, on a machine with an NVIDIA GPU and a CUDA build of
# JAX in $PYTHON's environment, e.g. `pip install -e ".[gpu,test]"`):
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# With no network, put wheels of the missing pure-Python dependencies (dask,
# distributed, h5netcdf, ...) in .whl/ first: they are installed from there
# into a scratch folder on PYTHONPATH, without an index.
# Logs go to OUT_DIR: pytest.log and bench-*.log.
set -uo pipefail
OUT=${1:-benchmarks/results/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# One process per test worker shares the GPU: allocate on demand (the
# default xhmm sets on import, exported here for the workers' JAX too).
export XLA_PYTHON_CLIENT_PREALLOCATE=false
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/xhmm-site .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/xhmm-site"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PY" -c "import jax, numpy, xarray, dask, numba; d = jax.devices(); print(d, 'jax', jax.__version__, 'numpy', numpy.__version__, 'xarray', xarray.__version__, 'dask', dask.__version__, 'numba', numba.__version__); assert d[0].platform == 'gpu', 'no GPU visible to JAX'" || exit 1

# Numerics on the GPU: references, enumeration, chunk invariance, sequences,
# operators, Viterbi, EM. SIGINT at the limit still prints pytest's summary.
timeout -s INT "${TEST_LIMIT:-240}" "$PY" -m pytest -p no:cacheprovider -q -n 6 \
    --durations=10 tests/test_smoke.py tests/test_golden.py tests/test_enumeration.py \
    tests/test_structured_engine.py tests/test_transitions.py tests/test_sequences.py \
    tests/test_viterbi.py tests/test_fit.py tests/test_chunking.py tests/test_missing.py \
    tests/test_from_nld.py tests/test_properties.py tests/test_errors.py \
    2>&1 | tee "$OUT/pytest.log" | tail -40

bench() {  # name, then harness arguments
    local name=$1; shift
    timeout "${BENCH_LIMIT:-60}" "$PY" -m xhmm bench --no-save --no-plots --repeats 1 \
        --rounds 1 --out /tmp/xhmm-bench "$@" > "$OUT/bench-$name.log" 2>&1
    echo "== $name (rc $?)"; tail -12 "$OUT/bench-$name.log"
}
# Dense at the seed's K; the structured NonLocal model against its own dense
# matrix; the seed-scale settings (memmap input, uint16 memmaps); dense at
# K = 1,000 against the NumPy loop on the host's CPUs. (The NumPy loop at
# K = 10,650 and T = 20,000 steps of the dense matrix outlast a minute.)
bench dense-10650 -T 2000 -K 10650 --chunk-size 500 --baselines none
BENCH_LIMIT=${BENCH_LIMIT:-110} bench nonlocal-2d --model nonlocal-2d -K 10650 -T 4000 \
    --chunk-size 1000 --baselines xhmm-dense
bench seed-settings --model nonlocal-2d -K 10650 -T 20000 --chunk-size 5000 --memmap \
    --posterior-dtype uint16 --input memmap --baselines none
bench dense-1000 -T 20000 -K 1000 --baselines numpy

"""Shared fixtures: the float64 NumPy reference and small random models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback

import xhmm  # noqa: F401  (registers ds.hmm)


def reference_forward_backward(log_lik, transition, initial):
    """Float64 NumPy forward-backward, the golden reference.

    ``transition`` is one (K, K) matrix, or a sequence of T - 1 of them
    (time-varying: ``transition[t]`` moves step t to step t + 1).
    Returns filtered (T, K), smoothed (T, K) and the marginal log-likelihood.
    Bins where prediction and likelihood are both impossible get 0.
    """
    log_lik = np.asarray(log_lik, dtype=np.float64)
    T, K = log_lik.shape
    matrices = np.asarray(transition, dtype=np.float64)
    if matrices.ndim == 2:
        matrices = np.broadcast_to(matrices, (max(T - 1, 1), K, K))
    filtered = np.zeros((T, K))
    total = 0.0
    predicted = np.asarray(initial, dtype=np.float64)
    for t in range(T):
        with np.errstate(divide="ignore"):
            log_w = np.log(predicted) + log_lik[t]
        peak = log_w.max()
        w = np.exp(log_w - peak)
        filtered[t] = w / w.sum()
        total += peak + np.log(w.sum())
        if t + 1 < T:
            predicted = filtered[t] @ matrices[t]
    smoothed = np.zeros((T, K))
    smoothed[-1] = filtered[-1]
    for t in range(T - 2, -1, -1):
        pred = filtered[t] @ matrices[t]
        ratio = np.divide(smoothed[t + 1], pred, out=np.zeros(K), where=pred > 0)
        s = filtered[t] * (matrices[t] @ ratio)
        smoothed[t] = s / s.sum()
    return filtered, smoothed, total


#: The test budget, from the environment variable ``XHMM_TEST_BUDGET``:
#: ``"fast"`` (the default; ``make test``) gives each hypothesis search the
#: small example count of :func:`examples`, ``"full"`` (``make test-all``,
#: CI) the large one. Tests marked ``slow`` are chosen with ``-m``, not here.
BUDGET = os.environ.get("XHMM_TEST_BUDGET", "fast")
BUDGETS = ("fast", "full")


def examples(fast: int, full: int) -> int:
    """``max_examples`` of a hypothesis search under the current :data:`BUDGET`."""
    return full if BUDGET == "full" else fast


def pytest_configure(config):
    if BUDGET not in BUDGETS:
        raise pytest.UsageError(f"XHMM_TEST_BUDGET must be one of {BUDGETS}, got {BUDGET!r}")
    # A shell starting the tests in the background (`make test &`) ignores SIGINT, and
    # the children the tests Ctrl-C (xhmm smooth, xhmm view) would inherit that; restore
    # Python's handler so that they start with the default disposition.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    group = parser.getgroup("xhmm", "xhmm test matrix")
    group.addoption("--xhmm-memmap", action="store_true",
                    help="run accessor calls with use_memmap=True unless a test sets it")
    group.addoption("--xhmm-eager", action="store_true",
                    help="run accessor calls with lazy_expand=False unless a test sets it")


def pytest_report_header(config):
    memmap = config.getoption("--xhmm-memmap")
    eager = config.getoption("--xhmm-eager")
    return (f"xhmm matrix cell: use_memmap={memmap}, lazy_expand={not eager}; "
            f"hypothesis budget: {BUDGET} (XHMM_TEST_BUDGET)")


@pytest.fixture(autouse=True)
def _matrix_defaults(request, monkeypatch, tmp_path_factory):
    """Flip the Config defaults of accessor calls for the CI matrix cells.

    Only keywords a test does not set itself are changed, so tests of
    specific settings keep them.
    """
    memmap = request.config.getoption("--xhmm-memmap")
    eager = request.config.getoption("--xhmm-eager")
    if not (memmap or eager):
        return
    original = xhmm.Config.resolve.__func__

    def resolve(cls, config, overrides):
        overrides = dict(overrides)
        if config is None:
            if memmap and "use_memmap" not in overrides and "resume" not in overrides:
                overrides["use_memmap"] = True
                overrides.setdefault("memmap_dir", tmp_path_factory.mktemp("matrix"))
            if eager:
                overrides.setdefault("lazy_expand", False)
        return original(cls, config, overrides)

    monkeypatch.setattr(xhmm.Config, "resolve", classmethod(resolve))


@pytest.fixture
def reference():
    return reference_forward_backward


def random_model(rng, T, K, spread=3.0):
    """A dense random model: (log_lik, transition, initial)."""
    A = rng.random((K, K)) + 0.05
    A /= A.sum(axis=1, keepdims=True)
    p0 = rng.random(K) + 0.1
    p0 /= p0.sum()
    ll = rng.normal(size=(T, K)) * spread
    return ll, A, p0


def underflow_model(K=40, T=60):
    """A tridiagonal random walk whose likelihood jumps far (±100 nats).

    The prediction at the likelihood's peak falls near float32's underflow
    limit, so float32 warns and float64 is needed for the right answer.
    Returns (log_lik (T, K), transition (K, K)).
    """
    A = np.zeros((K, K))
    for i in range(K):
        A[i, max(0, i - 1):i + 2] = 1
    A /= A.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(7)
    x = np.arange(K)
    ll = -100 * np.abs(x[None, :] - rng.integers(0, K, T)[:, None]) / K * 2
    return ll, A


def make_dataset(ll, mask=None, **coords):
    """Wrap a (T, N) log-likelihood in a Dataset with optional is_interior."""
    T, N = ll.shape
    c = {"time": np.arange(T)}
    if mask is not None:
        c["is_interior"] = ("state_bins", np.asarray(mask, dtype=bool))
    c.update(coords)
    return xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)}, coords=c)


class NoCompute(Callback):
    """Fails the test if any dask task runs while active."""

    def _start(self, dsk):
        raise AssertionError("dask computed before the input was validated")


# A child process builds random_model(rng(42), T, K), reads the likelihood
# through a dask graph of CHUNK-row blocks, runs ``call`` (an accessor call
# on ``ds``, with ``A``, ``p0`` and ``folder`` in scope) and SIGKILLs itself
# the ``kill_at``-th time it reads block 10 (rows 10 * CHUNK onwards, which
# the manifest's fingerprint does not sample when T is 240 and CHUNK 16): a
# run killed mid-flight.
_KILLED_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import dask.array as da
    import numpy as np
    sys.path.insert(0, {tests!r})
    import xhmm
    from conftest import make_dataset, random_model

    ll, A, p0 = random_model(np.random.default_rng(42), {T}, {K})
    folder = {folder!r}
    reads = [0]

    def read(block, block_info=None):
        if block_info[None]["chunk-location"] == (10, 0):
            reads[0] += 1
            if reads[0] == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)
        return block

    src = da.from_array(ll, chunks=({chunk}, 3)).map_blocks(read, dtype=ll.dtype)
    ds = make_dataset(np.zeros_like(ll))
    ds["log_likelihood"] = (("time", "state_bins"), src)
    {setup}
    {call}
    """
)


def run_killed_child(tmp_path, folder, kill_at: int, call: str, T: int, K: int, chunk: int,
                     setup: str = ""):
    """Run ``call`` in a child process that kills itself (see ``_KILLED_CHILD``).

    ``setup`` is code run before ``call`` (e.g. another way to die).
    """
    script = _KILLED_CHILD.format(tests=os.path.dirname(__file__), T=T, K=K, chunk=chunk,
                                  kill_at=kill_at, folder=str(folder), call=call,
                                  setup=setup)
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)

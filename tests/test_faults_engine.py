"""Faults on purpose in the engine: a dask worker killed under a batch, bit
flips and truncation in a run's data files and checkpoints, malformed
manifests, a likelihood changed before a resume, and kills of a real run at
seeded random instants. Each ends in the answer of an uninterrupted run or in
the documented error, with nothing the user had lost (see also
tests/test_faults.py)."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xhmm

from conftest import make_dataset, random_model

T, K, CHUNK = 240, 9, 16


@pytest.fixture
def model():
    ll, A, p0 = random_model(np.random.default_rng(7), T, K)
    return make_dataset(ll), A, p0


# -- 8. a dask.distributed worker killed under a batch ----------------------------

@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    import dask

    # the scheduler gives a task up at its worker's first death, so that the
    # one retry seen here is xhmm's
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                     dashboard_address=None) as local, \
            distributed.Client(local) as client:
        yield local, client


def _dying(transition, marker: Path, n_sequences: int, once: bool):
    """``transition``, whose worker process dies (``os._exit``) when a batch of
    ``n_sequences`` sequences first uses it; ``once``: only while ``marker``
    does not exist yet (it is created just before)."""
    def device(self, dtype, n):
        if n == n_sequences and not (once and marker.exists()):
            marker.touch()
            os._exit(1)
        return type(transition).device(self, dtype, n)

    dying = copy.copy(transition)
    dying.__class__ = type("Dying", (type(transition),), {"device": device})
    return dying


def _inject_worker_death(monkeypatch, marker: Path, n_sequences: int, once: bool) -> None:
    import xhmm.frontend.driver as driver

    run = driver._run_distributed
    monkeypatch.setattr(driver, "_run_distributed", lambda client, specs, transition, show:
                        run(client, specs, _dying(transition, marker, n_sequences, once),
                            show))


def _three_sequences(model, lazy: bool) -> xr.Dataset:
    ds, _, _ = model
    parts = [ds.isel(time=slice(start, start + 200)).assign_coords(time=np.arange(200))
             for start in (0, 20, 40)]
    many = xr.concat(parts, dim="sequence")
    return many.chunk({"time": 100}) if lazy else many


# Slow: each worker death restarts a Python process, which imports JAX and
# compiles the kernels again (10-40 s on a loaded two-core machine).
@pytest.mark.slow
@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_a_batch_whose_worker_dies_is_retried(model, cluster, tmp_path, monkeypatch, lazy):
    _, client = cluster
    _, A, p0 = model
    many = _three_sequences(model, lazy)
    options = dict(transition=A, initial=p0, chunk_size=CHUNK, batch_size=2, progress=False)
    want = many.hmm.smooth(client=False, **options)
    marker = tmp_path / "died"
    _inject_worker_death(monkeypatch, marker, 2, once=True)
    got = many.hmm.smooth(client=client, memmap_dir=tmp_path / "run", **options)
    assert marker.exists()  # a worker died under the batch of two sequences
    for name in ("acausal_posterior", "marginal_log_likelihood"):
        np.testing.assert_allclose(got[name].values, want[name].values, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_a_batch_lost_twice_is_an_error_naming_it(model, cluster, tmp_path, monkeypatch):
    local, client = cluster
    _, A, p0 = model
    many = _three_sequences(model, lazy=False)
    _inject_worker_death(monkeypatch, tmp_path / "died", 2, once=False)
    with pytest.raises(xhmm.XHMMError, match=r"batch 0 \(sequences 0, 1\) was lost twice on "
                       r"the dask.distributed cluster .*KilledWorker") as info:
        many.hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK, batch_size=2,
                        progress=False, client=client, memmap_dir=tmp_path / "run")
    assert not isinstance(info.value, TypeError)
    deadline = time.monotonic() + 10
    while any(str(key).startswith("xhmm-batch") for key in local.scheduler.tasks):
        assert time.monotonic() < deadline, "a batch task was left on the cluster"
        time.sleep(0.05)

"""Lazy results are safe on a cluster: no posterior data inside any dask graph."""

from __future__ import annotations

import cloudpickle
import numpy as np
import pytest
import xarray as xr

import xhmm  # noqa: F401  (registers ds.hmm)
from conftest import make_dataset, random_model

#: A 32 MiB float32 posterior: 131,072 steps x 64 bins.
T, K = 131_072, 64


def _graph_bytes(array) -> int:
    return len(cloudpickle.dumps(dict(array.__dask_graph__())))


@pytest.fixture(scope="module")
def big_model():
    rng = np.random.default_rng(5)
    ll, A, p0 = random_model(rng, T, K)
    return ll.astype(np.float32), A, p0


def test_graph_of_a_memmap_result_holds_no_data(big_model, tmp_path):
    ll, A, p0 = big_model
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0, chunk_size=16_384,
                                      use_memmap=True, memmap_dir=tmp_path / "run",
                                      lazy=True, progress=False)
    posterior = res.acausal_posterior
    assert posterior.nbytes == 32 * 2**20
    assert _graph_bytes(posterior.data) < 2**20
    # reopened from its folder alone: the same
    back = xhmm.open_run(tmp_path / "run")
    assert _graph_bytes(back.acausal_posterior.data) < 2**20
    np.testing.assert_array_equal(back.acausal_posterior[:1000].values,
                                  posterior[:1000].values)


@pytest.mark.slow
def test_reduction_under_a_local_cluster_matches_the_local_result():
    distributed = pytest.importorskip("distributed")
    ll, A, p0 = random_model(np.random.default_rng(8), 3_000, 20)
    ds = make_dataset(ll, state=("state_bins", np.repeat(["a", "b"], 10)))
    kw = dict(transition=A, initial=p0, chunk_size=500, time_chunks=700, progress=False)
    local = ds.hmm.smooth(**kw)
    want = local.acausal_posterior.groupby("state").sum().mean("time").values
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        # RAM outputs by default: under a client they spill to a memmap so
        # the graph carries file references, not the posterior
        res = ds.hmm.smooth(**kw)
        assert "xhmm_memmap_dir" in res.attrs
        assert _graph_bytes(res.acausal_posterior.data) < 2**16
        got = res.acausal_posterior.groupby("state").sum().mean("time").compute().values
        sequences = xr.concat([ds, ds], dim="sequence").hmm.smooth(**kw)
        both = sequences.acausal_posterior.sum(("time", "state_bins")).compute().values
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(both, float(local.acausal_posterior.sum()), rtol=1e-6)


def test_an_in_process_cluster_runs_batches_as_tasks_and_spills_to_memmap():
    """The two slow tests above in brief: one in-process worker, no worker processes."""
    distributed = pytest.importorskip("distributed")
    ll, A, p0 = random_model(np.random.default_rng(9), 300, 6)
    ds = make_dataset(ll)
    sequences = xr.concat([ds, make_dataset(ll[::-1].copy())], dim="sequence")
    kw = dict(transition=A, initial=p0, chunk_size=64, progress=False)
    local = sequences.hmm.smooth(client=False, batch_size=1, **kw)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=None) as client:
        one = ds.hmm.smooth(**kw)  # the active client: RAM outputs spill to a memmap
        assert "xhmm_memmap_dir" in one.attrs
        assert _graph_bytes(one.acausal_posterior.data) < 2**16
        on_cluster = sequences.hmm.smooth(client=client, batch_size=1, **kw)
        assert "xhmm_memmap_dir" in on_cluster.attrs
        xr.testing.assert_equal(on_cluster.acausal_posterior.compute(),
                                local.acausal_posterior)
        np.testing.assert_array_equal(one.acausal_posterior.values,
                                      local.acausal_posterior[0].values)

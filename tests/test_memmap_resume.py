"""Memmap runs: files on disk, manifest, kill -9 and resume, refusal to clobber."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

import xhmm
from xhmm.engine.storage import alloc_out

from conftest import make_dataset, random_model, run_killed_child

T, K, CHUNK = 240, 9, 16


def _model():
    return random_model(np.random.default_rng(42), T, K)


# Dies at the 5th chunk of the backward pass (code for the child's script).
KILL_IN_BACKWARD = """
import xhmm.engine.loop as loop
kernel, calls = loop.backward_chunk, [0]

def backward_chunk(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return kernel(*args, **kwargs)

loop.backward_chunk = backward_chunk
"""


def _run_child(tmp_path, folder, kill_at, options, setup=""):
    call = ("ds.hmm.smooth(transition=A, initial=p0, chunk_size={chunk}, use_memmap=True, "
            "memmap_dir=folder, progress=False, **{options!r})")
    return run_killed_child(tmp_path, folder, kill_at,
                            call.format(chunk=CHUNK, options=options), T, K, CHUNK, setup)


@pytest.mark.parametrize(
    "kill_at, options, setup",
    [  # first read of block 10: during the forward pass (make test: forward-uint16)
     pytest.param(1, {}, "", marks=pytest.mark.slow),
     # second read: the backward pass filters the input again
     (2, {"persist_causal": False}, ""),
     # uint16 storage: the backward pass filters every chunk again
     (1, {"posterior_dtype": "uint16"}, ""),
     # make test: backward-recomputing kills the backward pass
     pytest.param(0, {"posterior_dtype": "uint16"}, KILL_IN_BACKWARD,
                  marks=pytest.mark.slow)],
    ids=["forward", "backward-recomputing", "forward-uint16", "backward-uint16"],
)
def test_killed_run_resumes_bit_identical(tmp_path, kill_at, options, setup):
    folder = tmp_path / "run"
    proc = _run_child(tmp_path, folder, kill_at, options, setup)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "running"
    n_chunks = -(-T // CHUNK)
    done = manifest["forward_done"] + manifest["backward_done"]
    assert 0 < done < 2 * n_chunks

    ll, A, p0 = _model()
    ds = make_dataset(ll)
    resumed = ds.hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK, use_memmap=True,
                            memmap_dir=folder, resume=True, **options)
    fresh = ds.hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK, **options)
    np.testing.assert_array_equal(resumed.acausal_posterior.values,
                                  fresh.acausal_posterior.values)
    assert float(resumed.marginal_log_likelihood) == float(fresh.marginal_log_likelihood)
    assert ("causal_posterior" in resumed) == options.get("persist_causal", True)
    if "causal_posterior" in fresh:
        np.testing.assert_array_equal(resumed.causal_posterior.values,
                                      fresh.causal_posterior.values)
    assert json.loads((folder / "manifest.json").read_text())["status"] == "complete"


def test_resume_with_other_settings_says_what_differs(tmp_path):
    ll, A, p0 = _model()
    ds = make_dataset(ll)
    folder = tmp_path / "run"
    ds.hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK, use_memmap=True,
                  memmap_dir=folder)
    with pytest.raises(xhmm.ResumeError, match="chunk_size"):
        ds.hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK * 2, use_memmap=True,
                      memmap_dir=folder, resume=True)
    A2 = A[::-1].copy()
    with pytest.raises(xhmm.ResumeError, match="transition"):
        ds.hmm.smooth(transition=A2, initial=p0, chunk_size=CHUNK, use_memmap=True,
                      memmap_dir=folder, resume=True)
    ll2 = ll.copy()
    ll2[0, 0] += 1.0
    with pytest.raises(xhmm.ResumeError, match="log_likelihood_sample"):
        make_dataset(ll2).hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK,
                                     use_memmap=True, memmap_dir=folder, resume=True)


def test_resume_without_manifest_is_an_error(tmp_path):
    ll, A, p0 = _model()
    with pytest.raises(xhmm.ResumeError, match="manifest.json is missing"):
        make_dataset(ll).hmm.smooth(transition=A, initial=p0, use_memmap=True,
                                    memmap_dir=tmp_path, resume=True)


def test_non_empty_dir_is_not_clobbered(tmp_path):
    ll, A, p0 = _model()
    keep = tmp_path / "precious.txt"
    keep.write_text("earlier results")
    for overwrite in (False, True):
        with pytest.raises(xhmm.StorageError, match="holds files xhmm did not write"):
            make_dataset(ll).hmm.smooth(transition=A, initial=p0, use_memmap=True,
                                        memmap_dir=tmp_path, overwrite=overwrite)
        assert keep.read_text() == "earlier results"
    folder = tmp_path / "run"
    make_dataset(ll).hmm.smooth(transition=A, initial=p0, memmap_dir=folder)
    with pytest.raises(xhmm.StorageError, match="holds an earlier xhmm run"):
        make_dataset(ll).hmm.smooth(transition=A, initial=p0, memmap_dir=folder)
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0, memmap_dir=folder,
                                      overwrite=True)
    assert np.isfinite(res.acausal_posterior.values).all()


def test_memmap_files_hold_the_results(tmp_path):
    ll, A, p0 = _model()
    res = make_dataset(ll).hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK,
                                      use_memmap=True, memmap_dir=tmp_path / "m")
    on_disk = np.memmap(tmp_path / "m" / "acausal_posterior.dat", dtype=np.float32,
                        mode="r", shape=(1, T, K))  # (sequence, time, interior bins)
    np.testing.assert_array_equal(np.asarray(on_disk[0]), res.acausal_posterior.values)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["outputs"]["acausal_posterior"] == {
        "file": "acausal_posterior.dat", "shape": [1, T, K], "dtype": "float32"}
    assert res.attrs["xhmm_memmap_dir"] == str(tmp_path / "m")


def test_failed_run_is_marked_failed(tmp_path):
    ll, A, p0 = _model()
    ll[100] = -np.inf
    with pytest.raises(xhmm.LikelihoodError, match="time index 100"):
        make_dataset(ll).hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK,
                                    use_memmap=True, memmap_dir=tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert "time index 100" in manifest["error"]
    assert manifest["forward_done"] == 100 // CHUNK


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint16"])
def testalloc_out_memmap_reopens(tmp_path, dtype):
    out = alloc_out((7, 5), dtype, "thing", tmp_path)
    assert isinstance(out, np.memmap) and out.shape == (7, 5) and out.dtype == dtype
    out[3] = 1
    out.flush()
    back = alloc_out((7, 5), dtype, "thing", tmp_path, mode="r")
    assert (tmp_path / "thing.dat").stat().st_size == 7 * 5 * np.dtype(dtype).itemsize
    np.testing.assert_array_equal(np.asarray(back[3]), np.ones(5, dtype))
    ram = alloc_out((7, 5), dtype, "thing")
    assert not isinstance(ram, np.memmap) and ram.shape == (7, 5) and ram.dtype == dtype


def test_open_run_reopens_a_finished_run(tmp_path):
    ll, A, p0 = _model()
    mask = np.ones(K, bool)
    mask[[0, 4]] = False
    state = np.array(["a"] * 4 + ["b"] * 5)
    ds = make_dataset(ll, mask, state=("state_bins", state))
    A_int = A[np.ix_(mask, mask)]
    A_int /= A_int.sum(axis=1, keepdims=True)
    p_int = p0[mask] / p0[mask].sum()
    res = ds.hmm.smooth(transition=A_int, initial=p_int, chunk_size=CHUNK, use_memmap=True,
                        memmap_dir=tmp_path / "m", quantize_posteriors=True, emit_map=True)
    back = xhmm.open_run(tmp_path / "m")
    np.testing.assert_array_equal(back.acausal_posterior.values,
                                  res.acausal_posterior.values)
    np.testing.assert_array_equal(back.is_interior.values, mask)
    np.testing.assert_array_equal(back.map_state_bin.values, res.map_state_bin.values)
    np.testing.assert_array_equal(back.acausal_state_probabilities.values,
                                  res.acausal_state_probabilities.values)
    assert list(back.states.values) == ["a", "b"]
    assert float(back.marginal_log_likelihood) == float(res.marginal_log_likelihood)


def test_open_run_refuses_an_unfinished_run(tmp_path):
    folder = tmp_path / "run"
    proc = _run_child(tmp_path, folder, 1, {})
    assert proc.returncode == -signal.SIGKILL
    with pytest.raises(xhmm.IncompleteResultError, match="not complete.*resume=True"):
        xhmm.open_run(folder)

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
from test_faults import CHUNK, K, T, _recomputing_model, _smooth


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
            distributed.Client(local, set_as_default=False) as client:
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


# -- damaged or changed data files: per-chunk row checksums -----------------------

def _flip_bit(path: Path, offset: int) -> None:
    """Flip one bit of ``path`` at byte ``offset`` (a size-preserving change)."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 0x10]))


def _stop_run(monkeypatch, module, name: str, at: int, run) -> None:
    """Run ``run()`` with ``module.name`` stopping it at its ``at``-th call, as a kill
    would (the manifest keeps what the last commit wrote)."""
    from xhmm.engine.manifest import Manifest

    original, calls = getattr(module, name), [0]

    def stopping(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            raise RuntimeError("stopped")
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Manifest, "record_stop", lambda self, exc: None)
        patch.setattr(module, name, stopping)
        with pytest.raises(RuntimeError, match="stopped"):
            run()


@pytest.mark.parametrize("name", ["acausal_posterior", "log_normalizer", "causal_posterior"])
def test_a_bit_flip_in_a_finished_run_is_found_by_open_run(model, tmp_path, name):
    folder = tmp_path / "run"
    _smooth(model, folder)
    rows = T if name == "log_normalizer" else T * K
    itemsize = 8 if name == "log_normalizer" else 4
    row = 3 * CHUNK + 5  # chunk 3
    _flip_bit(folder / f"{name}.dat", (row * rows // T) * itemsize + 1)
    with pytest.raises(xhmm.StorageError, match=rf"{name}.dat' is damaged or was changed: "
                       r"chunk 3 \(time rows 48-63\) does not match"):
        xhmm.open_run(folder)
    xhmm.open_run(folder, verify=False)  # the caller's choice: no read of the files


def test_a_bit_flip_in_a_committed_chunk_stops_the_resume(model, tmp_path, monkeypatch):
    import xhmm.engine.loop as loop

    folder = tmp_path / "run"
    _stop_run(monkeypatch, loop, "backward_chunk", 6, lambda: _smooth(model, folder))
    # chunk 14 is the last, done first by the backward pass
    _flip_bit(folder / "acausal_posterior.dat", (14 * CHUNK + 2) * K * 4)
    with pytest.raises(xhmm.ResumeError, match=r"acausal_posterior.dat' is damaged or was "
                       r"changed: chunk 14 \(time rows 224-239\)"):
        _smooth(model, folder, resume=True)


def test_a_bit_flip_in_a_viterbi_path_stops_the_resume(model, tmp_path, monkeypatch):
    import xhmm.engine.viterbi as viterbi

    ds, A, p0 = model
    folder = tmp_path / "run"

    def decode(**options):
        return ds.hmm.most_likely_sequence(transition=A, initial=p0, chunk_size=CHUNK,
                                           memmap_dir=folder, progress=False, **options)

    _stop_run(monkeypatch, viterbi, "viterbi_backtrack_chunk", 6, decode)
    _flip_bit(folder / "path.dat", (13 * CHUNK + 1) * 4)
    with pytest.raises(xhmm.ResumeError, match=r"path.dat' is damaged or was changed: "
                       r"chunk 13 \(time rows 208-223\)"):
        decode(resume=True)


def test_save_results_refuses_a_run_that_is_no_longer_complete(model, tmp_path):
    import json

    folder = tmp_path / "run"
    res = _smooth(model, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["status"] = "failed"  # e.g. a later resume of it failed
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(xhmm.IncompleteResultError, match="no longer complete"):
        xhmm.save_results(res, tmp_path / "r.nc")
    assert not (tmp_path / "r.nc").exists()


# -- a likelihood changed before a resume ----------------------------------------

@pytest.mark.parametrize("where", [5, 10], ids=["before-resume-point", "re-read"])
def test_a_likelihood_changed_before_resume_is_found(model, tmp_path, monkeypatch, where):
    """Chunk 5 is the one whose checkpoint the resumed forward pass starts from;
    chunk 10 is read again by the backward pass (uint16 storage). Neither is
    among the three blocks the input fingerprint samples."""
    import xhmm.engine.loop as loop

    ds, A, p0 = model
    folder = tmp_path / "run"
    options = dict(posterior_dtype="uint16")
    at = 7 if where == 5 else 17  # forward: 6 chunks done; backward: 5 of 15 done
    _stop_run(monkeypatch, loop, "forward_chunk", at, lambda: _smooth(model, folder,
                                                                      **options))
    changed = ds.copy(deep=True)
    changed.log_likelihood.values[where * CHUNK + 3, 4] -= 1.0
    with pytest.raises(xhmm.ResumeError, match=rf"log_likelihood changed since the run read "
                       rf"it: time rows {where * CHUNK}-{where * CHUNK + CHUNK - 1} "
                       rf"\(chunk {where}\)"):
        _smooth((changed, A, p0), folder, resume=True, **options)


# -- malformed manifests, another kind of run --------------------------------------

@pytest.mark.parametrize("field, value", [
    ("forward_done", "abc"), ("reader", {"lengths": "x"}), ("n_chunks", None),
    ("result_config", 5), ("outputs", {"log_normalizer": {"shape": "zz"}}),
    ("row_crc", {"acausal_posterior": {"3": "x"}}), ("chunk_float64", [1, 2]),
])
def test_a_malformed_manifest_field_is_named(model, tmp_path, field, value):
    import json

    folder = tmp_path / "run"
    _smooth(model, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest[field] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for attempt in (lambda: _smooth(model, folder, resume=True),
                    lambda: xhmm.open_run(folder)):
        with pytest.raises(xhmm.ResumeError, match=rf"manifest.json' is damaged: field "
                           rf"'{field}' is .*, expected"):
            attempt()


def test_a_manifest_of_bytes_is_a_resume_error(model, tmp_path):
    folder = tmp_path / "run"
    _smooth(model, folder)
    (folder / "manifest.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(xhmm.ResumeError, match="cannot read .*manifest.json'.*utf-8"):
        xhmm.open_run(folder)


@pytest.mark.parametrize("held, asked", [("filter", "smooth"), ("smooth", "filter"),
                                         ("smooth", "most_likely_sequence"),
                                         ("most_likely_sequence", "filter")])
def test_resume_into_another_kind_of_run_says_so(model, tmp_path, held, asked):
    ds, A, p0 = model
    options = dict(transition=A, initial=p0, chunk_size=CHUNK, progress=False,
                   memmap_dir=tmp_path / "run")
    getattr(ds.hmm, held)(**options)
    with pytest.raises(xhmm.ResumeError, match=rf"it holds a {held} run, and a {asked} run "
                       "was asked for"):
        getattr(ds.hmm, asked)(resume=True, **options)


# -- kills at seeded random instants, bit flips at seeded random places -----------

def kill_case(name: str):
    """``(ds, method, options)`` of a run killed at random instants (also imported
    by the child process of :func:`_killed_child`)."""
    if name.startswith("recompute"):
        ds, A, p0 = _recomputing_model()
        chunk = 5
    else:
        ll, A, p0 = random_model(np.random.default_rng(7), T, K)
        ds, chunk = make_dataset(ll), CHUNK
    method = "most_likely_sequence" if name.endswith("viterbi") else "smooth"
    options = dict(transition=A, initial=p0, chunk_size=chunk, progress=False)
    if name == "uint16":
        options["posterior_dtype"] = "uint16"
    return ds, method, options


# The child runs kill_case(name) into ``folder`` and SIGKILLs itself at the
# ``kill_at``-th call of zlib.crc32: the checksums of every chunk's input rows,
# output rows and checkpoints, so the instants fall between writes, flushes
# and manifest commits, inside either pass and the float64 recomputation.
_CHILD = """
import os, signal, sys, zlib
sys.path.insert(0, {tests!r})
from test_faults_engine import kill_case

ds, method, options = kill_case({name!r})
calls, crc32 = [0], zlib.crc32

def dying(*args):
    calls[0] += 1
    if calls[0] == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return crc32(*args)

zlib.crc32 = dying
getattr(ds.hmm, method)(memmap_dir={folder!r}, **options)
"""


def _count_crc_calls(monkeypatch, run) -> tuple[int, tuple[int, int] | None]:
    """The crc32 calls of ``run()``, and those of its first float64 recomputation
    (from its roll-back of the manifest to the commit that ends it), if any."""
    import zlib

    from xhmm.engine.runstate import RunState

    calls, crc32, marks = [0], zlib.crc32, []

    def counting(*args):
        calls[0] += 1
        return crc32(*args)

    def mark(original):
        def marked(self, *args, **kwargs):
            marks.append((original.__name__, calls[0]))
            return original(self, *args, **kwargs)
        return marked

    with monkeypatch.context() as patch:
        patch.setattr(zlib, "crc32", counting)
        patch.setattr(RunState, "roll_back_forward", mark(RunState.roll_back_forward))
        patch.setattr(RunState, "commit", mark(RunState.commit))
        run()
    starts = [i for i, (name, _) in enumerate(marks) if name == "roll_back_forward"]
    if not starts:
        return calls[0], None
    return calls[0], (marks[starts[0]][1] + 1, marks[starts[0] + 1][1])


def _same_as_uninterrupted(folder: Path, name: str, what: str) -> None:
    """Resume the run of kill_case(name) in ``folder``; assert it equals a run in RAM."""
    ds, method, options = kill_case(name)
    run = getattr(ds.hmm, method)
    if not (folder / "manifest.json").exists():  # stopped before the run's first commit
        resumed = run(memmap_dir=folder, overwrite=True, **options)
    else:
        resumed = run(memmap_dir=folder, resume=True, **options)
    fresh = run(**options)
    for variable in fresh.data_vars:
        np.testing.assert_array_equal(resumed[variable].values, fresh[variable].values,
                                      err_msg=f"{name}, {what}")
    assert resumed.attrs["xhmm_float64_chunks"] == fresh.attrs["xhmm_float64_chunks"]


def _n_crc_calls(tmp_path, monkeypatch, name: str) -> tuple[int, tuple[int, int] | None]:
    """:func:`_count_crc_calls` of kill_case(name)."""
    ds, method, options = kill_case(name)
    return _count_crc_calls(monkeypatch, lambda: getattr(ds.hmm, method)(
        memmap_dir=tmp_path / "count", **options))


def _killed_then_resumed(tmp_path, monkeypatch, name: str, seed: int) -> None:
    import signal
    import subprocess
    import sys

    n_calls, redo = _n_crc_calls(tmp_path, monkeypatch, name)
    # inside the float64 recomputation where there is one
    kill_at = int(np.random.default_rng(seed).integers(*(redo or (1, n_calls))))
    folder = tmp_path / "run"
    script = _CHILD.format(tests=str(Path(__file__).parent), name=name, kill_at=kill_at,
                           folder=str(folder))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    _same_as_uninterrupted(folder, name, f"SIGKILL at crc32 call {kill_at}")


def test_a_run_killed_at_a_random_instant_resumes(tmp_path, monkeypatch):
    _killed_then_resumed(tmp_path, monkeypatch, "recompute", 1)


@pytest.mark.slow
@pytest.mark.parametrize("name, seed", [("uint16", 2), ("recompute-viterbi", 3)])
def test_runs_killed_at_other_random_instants_resume(tmp_path, monkeypatch, name, seed):
    _killed_then_resumed(tmp_path, monkeypatch, name, seed)


def _stopped_at_random_instants(tmp_path, monkeypatch, name: str, seed: int, n: int) -> None:
    """Stop the run (in this process, as a kill would) at ``n`` seeded random
    crc32 calls (the first inside the float64 recomputation where there is one),
    each time resuming to the uninterrupted answer."""
    n_calls, redo = _n_crc_calls(tmp_path, monkeypatch, name)
    rng = np.random.default_rng(seed)
    instants = rng.integers(1, n_calls, size=n)
    if redo is not None:
        instants[0] = rng.integers(*redo)
    for number, at in enumerate(instants):
        folder = tmp_path / f"run-{number}"
        _interrupted(monkeypatch, folder, name, int(at))
        _same_as_uninterrupted(folder, name, f"stopped at crc32 call {at}")


@pytest.mark.parametrize("name", ["recompute", "recompute-viterbi"])
def test_runs_stopped_at_random_instants_resume(tmp_path, monkeypatch, name):
    _stopped_at_random_instants(tmp_path, monkeypatch, name, 5, 3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["plain", "uint16", "viterbi", "recompute",
                                  "recompute-viterbi"])
def test_runs_stopped_at_many_random_instants_resume(tmp_path, monkeypatch, name):
    _stopped_at_random_instants(tmp_path, monkeypatch, name, 6, 12)


def _interrupted(monkeypatch, folder: Path, name: str, at: int):
    """Run kill_case(name) into ``folder``, stopped at crc32 call ``at`` as a kill
    would stop it (the manifest keeps what the last commit wrote)."""
    import zlib

    from xhmm.engine.manifest import Manifest

    ds, method, options = kill_case(name)
    calls, crc32 = [0], zlib.crc32

    def stopping(*args):
        calls[0] += 1
        if calls[0] == at:
            raise RuntimeError("stopped")
        return crc32(*args)

    with monkeypatch.context() as patch:
        patch.setattr(Manifest, "record_stop", lambda self, exc: None)
        patch.setattr(zlib, "crc32", stopping)
        with pytest.raises(RuntimeError, match="stopped"):
            getattr(ds.hmm, method)(memmap_dir=folder, **options)


@pytest.mark.parametrize("name", ["plain", pytest.param("uint16", marks=pytest.mark.slow),
                                  pytest.param("viterbi", marks=pytest.mark.slow)])
def test_random_bit_flips_are_found_or_harmless(tmp_path, monkeypatch, name):
    """A bit flipped anywhere in the data files of a run stopped half-way: resuming
    either says which file is damaged or gives the uninterrupted answer."""
    ds, method, options = kill_case(name)
    run = getattr(ds.hmm, method)
    fresh = run(**options)
    rng = np.random.default_rng(11)
    n_calls, _ = _n_crc_calls(tmp_path, monkeypatch, name)
    outcomes = set()
    for attempt in range(6):
        folder = tmp_path / f"run{attempt}"
        # stopped in the second half: most rows committed, some not
        _interrupted(monkeypatch, folder, name, int(rng.integers(n_calls // 2, n_calls)))
        files = sorted(folder.glob("*.dat"))
        path = files[rng.integers(len(files))]
        _flip_bit(path, int(rng.integers(path.stat().st_size)))
        try:
            resumed = run(memmap_dir=folder, resume=True, **options)
        except xhmm.ResumeError as error:
            assert path.name in str(error) or "checkpoint" in str(error), str(error)
            outcomes.add("found")
            continue
        for variable in fresh.data_vars:
            np.testing.assert_array_equal(resumed[variable].values, fresh[variable].values,
                                          err_msg=f"{path.name} flipped, not found")
        outcomes.add("harmless")
    assert "found" in outcomes  # the seeds hit committed rows at least once


def test_random_bit_flips_in_a_finished_run_are_found_by_open_run(model, tmp_path):
    """Every flipped bit of a result file of a finished run is found by open_run;
    a flipped checkpoint (not part of the results) leaves them intact."""
    folder = tmp_path / "run"
    want = _smooth(model, folder, emit_map=True, emit_entropy=True).compute()
    rng = np.random.default_rng(3)
    for _ in range(8):
        files = sorted(folder.glob("*.dat"))
        path = files[rng.integers(len(files))]
        offset = int(rng.integers(path.stat().st_size))
        _flip_bit(path, offset)
        if "checkpoints" in path.name:
            got = xhmm.open_run(folder)
            np.testing.assert_array_equal(got.acausal_posterior.values,
                                          want.acausal_posterior.values)
        else:
            with pytest.raises(xhmm.StorageError, match=f"{path.name}' is damaged"):
                xhmm.open_run(folder)
        _flip_bit(path, offset)  # back as it was

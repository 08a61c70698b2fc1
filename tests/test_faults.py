"""Faults on purpose: damaged output files, corrupt checkpoints, two runs in one
folder, overwrites of what xhmm did not write. Each ends in the documented
error, with nothing the user had lost, never in a wrong answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import xhmm

from conftest import make_dataset, random_model

T, K, CHUNK = 240, 9, 16


@pytest.fixture
def model():
    ll, A, p0 = random_model(np.random.default_rng(7), T, K)
    return make_dataset(ll), A, p0


def _smooth(model, folder, **options):
    ds, A, p0 = model
    return ds.hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK, memmap_dir=folder,
                         progress=False, **options)


def _truncate(path: Path) -> int:
    """Cut ``path`` to half its size; return the new size."""
    size = path.stat().st_size // 2
    with open(path, "r+b") as fh:
        fh.truncate(size)
    return size


# -- 1. a short output file is never extended with zeros -------------------------

def test_truncated_output_refuses_resume(model, tmp_path):
    folder = tmp_path / "run"
    _smooth(model, folder)
    path = folder / "acausal_posterior.dat"
    size = _truncate(path)
    with pytest.raises(xhmm.ResumeError, match="acausal_posterior.dat' holds "
                       f"{size:,} bytes"):
        _smooth(model, folder, resume=True)
    assert path.stat().st_size == size  # not extended


def test_truncated_output_refuses_open_run(model, tmp_path):
    folder = tmp_path / "run"
    _smooth(model, folder)
    _truncate(folder / "acausal_posterior.dat")
    with pytest.raises(xhmm.StorageError, match="acausal_posterior.dat' holds") as info:
        xhmm.open_run(folder)
    assert not isinstance(info.value, xhmm.ResumeError)


def test_deleted_output_refuses_open_run(model, tmp_path):
    folder = tmp_path / "run"
    _smooth(model, folder)
    (folder / "causal_posterior.dat").unlink()
    with pytest.raises(xhmm.StorageError, match="causal_posterior.dat' is missing"):
        xhmm.open_run(folder)


def test_truncated_output_fails_saving_its_result(model, tmp_path):
    folder = tmp_path / "run"
    res = _smooth(model, folder)
    _truncate(folder / "acausal_posterior.dat")
    with pytest.raises(xhmm.StorageError, match="acausal_posterior.dat' holds"):
        xhmm.save_results(res, tmp_path / "r.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# -- 2. checkpoints are checked at every use ------------------------------------

def _fail_at_call(monkeypatch, module, name: str, at: int) -> None:
    """Make ``module.name`` raise RuntimeError at its ``at``-th call."""
    kernel, calls = getattr(module, name), [0]

    def failing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            raise RuntimeError("injected failure")
        return kernel(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


def _scramble_row(path: Path, index: int, n_chunks: int) -> None:
    """Reverse checkpoint row ``index``: valid-looking floats, another carry."""
    rows = np.memmap(path, dtype=np.float64, mode="r+", shape=(n_chunks, 1, K))
    rows[index] = rows[index][:, ::-1].copy()
    rows.flush()
    del rows


@pytest.mark.parametrize("options", [{"persist_causal": False},
                                     {"posterior_dtype": "uint16"}],
                         ids=["persist_causal=False", "uint16"])
def test_corrupt_forward_checkpoint_stops_the_backward_pass(model, tmp_path, monkeypatch,
                                                             options):
    import xhmm.engine.loop as loop

    folder = tmp_path / "run"
    with monkeypatch.context() as patch:
        _fail_at_call(patch, loop, "backward_chunk", 5)
        with pytest.raises(RuntimeError, match="injected"):
            _smooth(model, folder, **options)
    manifest = json.loads((folder / "manifest.json").read_text())
    n_chunks = manifest["n_chunks"]
    assert manifest["forward_done"] == n_chunks and 0 < manifest["backward_done"] < 5
    _scramble_row(folder / "checkpoints.dat", 3, n_chunks)
    with pytest.raises(xhmm.ResumeError, match="forward checkpoint 3 .* is corrupt"):
        _smooth(model, folder, resume=True, **options)


def test_corrupt_viterbi_checkpoint_stops_the_backtrack(model, tmp_path, monkeypatch):
    import xhmm.engine.viterbi as viterbi

    ds, A, p0 = model
    folder = tmp_path / "run"

    def decode(**options):
        return ds.hmm.most_likely_sequence(transition=A, initial=p0, chunk_size=CHUNK,
                                           memmap_dir=folder, progress=False, **options)

    with monkeypatch.context() as patch:
        _fail_at_call(patch, viterbi, "viterbi_backtrack_chunk", 5)
        with pytest.raises(RuntimeError, match="injected"):
            decode()
    n_chunks = json.loads((folder / "manifest.json").read_text())["n_chunks"]
    _scramble_row(folder / "max_checkpoints.dat", 3, n_chunks)
    with pytest.raises(xhmm.ResumeError, match="forward checkpoint 3 .* is corrupt"):
        decode(resume=True)


# -- 3. one writer per run folder ------------------------------------------------

def _hold_lock(folder: Path):
    """Hold ``folder``'s run lock through a second open of the lock file, as
    another process would (flock locks belong to the open file description)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / ".xhmm.lock", "a+")
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.truncate(0)
    fh.write("4242\n")
    fh.flush()
    return fh


@pytest.mark.parametrize("options", [{"overwrite": True}, {"resume": True}, {}],
                         ids=["overwrite", "resume", "fresh"])
def test_a_locked_folder_is_refused_naming_the_holder(model, tmp_path, options):
    folder = tmp_path / "run"
    if options:
        _smooth(model, folder)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} if options else {}
    holder = _hold_lock(folder)
    try:
        with pytest.raises(xhmm.StorageError, match="in use by another xhmm run "
                           r"\(process 4242\)"):
            _smooth(model, folder, **options)
    finally:
        holder.close()
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert {name: t for name, t in after.items() if name != ".xhmm.lock"} == {
        name: t for name, t in before.items() if name != ".xhmm.lock"}


def test_a_locked_sequence_folder_is_refused(model, tmp_path):
    ds, A, p0 = model
    many = ds.expand_dims(sequence=2)
    holder = _hold_lock(tmp_path / "run")
    try:
        with pytest.raises(xhmm.StorageError, match=r"process 4242"):
            many.hmm.smooth(transition=A, initial=p0, memmap_dir=tmp_path / "run")
    finally:
        holder.close()


def test_the_lock_is_released_after_a_run(model, tmp_path, monkeypatch):
    import xhmm.engine.loop as loop

    folder = tmp_path / "run"
    _smooth(model, folder)
    assert (folder / ".xhmm.lock").read_text().strip() == str(__import__("os").getpid())
    _hold_lock(folder).close()  # free after a finished run
    with monkeypatch.context() as patch:
        _fail_at_call(patch, loop, "backward_chunk", 3)
        with pytest.raises(RuntimeError, match="injected"):
            _smooth(model, folder, overwrite=True)
    _hold_lock(folder).close()  # free after a failed run
    with pytest.raises(xhmm.IncompleteResultError):
        xhmm.open_run(folder)  # reading needs no lock
    res = _smooth(model, folder, resume=True)
    holder = _hold_lock(folder)  # a live result does not hold the lock
    try:
        assert np.isfinite(xhmm.open_run(folder).acausal_posterior.values).any()
        assert np.isfinite(res.acausal_posterior.values).any()
    finally:
        holder.close()


def test_manifest_writes_use_unique_temporary_names(tmp_path):
    from xhmm.engine.manifest import Manifest

    names = []
    real_replace = __import__("os").replace

    def replace(src, dst):
        names.append(Path(src).name)
        return real_replace(src, dst)

    manifest = Manifest(tmp_path, {"status": "running"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("os.replace", replace)
        manifest.write()
        manifest.write()
    pid = __import__("os").getpid()
    assert len(set(names)) == 2
    assert all(name.startswith(f".manifest.json.{pid}.") and name.endswith(".tmp")
               for name in names)


# -- 4. overwrite never deletes what xhmm did not write --------------------------

def _user_folder(path: Path) -> Path:
    path.mkdir()
    (path / "thesis.tex").write_text("precious")
    return path


def _intact(path: Path) -> bool:
    return (path / "thesis.tex").read_text() == "precious"


def test_overwrite_refuses_a_memmap_dir_of_user_files(model, tmp_path):
    folder = _user_folder(tmp_path / "run")
    with pytest.raises(xhmm.StorageError, match="'.*run' holds files xhmm did not write "
                       r"\(thesis.tex\)"):
        _smooth(model, folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"] and _intact(folder)


def test_overwrite_replaces_a_memmap_dir_xhmm_wrote(model, tmp_path):
    folder = tmp_path / "run"
    _smooth(model, folder)
    res = _smooth(model, folder, overwrite=True)
    assert np.isfinite(res.acausal_posterior.values).any()


def test_save_overwrite_refuses_a_foreign_netcdf(model, tmp_path):
    ds, A, p0 = model
    res = ds.hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK)
    target = tmp_path / "data.nc"
    ds.to_netcdf(target, engine="h5netcdf")
    before = target.read_bytes()
    with pytest.raises(xhmm.StorageError, match="'.*data.nc' is not a results file or "
                       "Zarr store written by xhmm"):
        xhmm.save_results(res, target, overwrite=True)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.nc"]


@pytest.mark.parametrize("name", ["x.zarr", "mydir"])
def test_save_overwrite_refuses_a_plain_folder(model, tmp_path, name):
    ds, A, p0 = model
    res = ds.hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK)
    folder = _user_folder(tmp_path / name)
    with pytest.raises(xhmm.StorageError, match=f"'.*{name}' is not a results file"):
        xhmm.save_results(res, folder, overwrite=True)
    assert _intact(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("name", ["r.nc", "r.zarr"])
def test_save_overwrite_replaces_what_xhmm_wrote(model, tmp_path, name):
    ds, A, p0 = model
    res = ds.hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK)
    xhmm.save_results(res, tmp_path / name)
    xhmm.save_results(res, tmp_path / name, overwrite=True)
    back = xhmm.open_results(tmp_path / name)
    np.testing.assert_allclose(back.acausal_posterior.values, res.acausal_posterior.values)


def test_cli_force_refuses_a_user_folder(model, tmp_path, capsys):
    from xhmm.cli import main

    ds, A, p0 = model
    ds.assign(transition=(("state_bins_from", "state_bins_to"), A),
              initial=("state_bins", p0)).to_netcdf(
        tmp_path / "ll.nc", engine="h5netcdf")
    folder = _user_folder(tmp_path / "mydir")
    assert main(["smooth", str(tmp_path / "ll.nc"), "--out", str(folder), "--force",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "mydir' is not a results file or Zarr store written by xhmm" in err
    assert _intact(folder)


# -- 5. a result never changes under its owner -----------------------------------

def test_a_result_whose_run_was_replaced_is_stale(model, tmp_path):
    ds, A, p0 = model
    folder = tmp_path / "run"
    old = _smooth(model, folder)
    expected = old.acausal_posterior.values
    again = _smooth(model, folder, resume=True)  # the same run: still current
    np.testing.assert_array_equal(old.acausal_posterior.values, expected)
    np.testing.assert_array_equal(again.acausal_posterior.values, expected)
    other = ds.assign(log_likelihood=(ds.log_likelihood.dims, ds.log_likelihood.values[::-1]))
    new = other.hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK, memmap_dir=folder,
                           overwrite=True, progress=False)
    for name in ("acausal_posterior", "causal_posterior"):
        with pytest.raises(xhmm.StaleResultError, match="replaced by a later run"):
            old[name].values
    assert not np.array_equal(new.acausal_posterior.values, expected)
    np.testing.assert_array_equal(xhmm.open_run(folder).acausal_posterior.values,
                                  new.acausal_posterior.values)


def test_a_result_whose_run_was_replaced_by_a_shorter_one_is_stale(model, tmp_path):
    ds, A, p0 = model
    folder = tmp_path / "run"
    old = _smooth(model, folder)
    ds.isel(time=slice(0, T // 2)).hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK,
                                               memmap_dir=folder, overwrite=True,
                                               progress=False)
    with pytest.raises(xhmm.StaleResultError):
        old.acausal_posterior.values
    with pytest.raises(xhmm.StaleResultError):
        xhmm.save_results(old, tmp_path / "old.nc")
    assert not (tmp_path / "old.nc").exists()


# -- a run stopped inside the float64 recomputation resumes ----------------------

def _recomputing_model():
    """Far bins predicted below 1e-30 for three chunks (float32 keeps going),
    then the likelihood jumps there: chunks 0-3 are recomputed in float64."""
    n_bins, n_time = 12, 40
    A = np.full((n_bins, n_bins), 1e-35)
    np.fill_diagonal(A, 1.0)
    A /= A.sum(axis=1, keepdims=True)
    x = np.arange(n_bins)
    ll = np.repeat(-100.0 * np.abs(x - 2)[None, :].astype(float), n_time, axis=0)
    ll[17:] = -200.0 * (x != 9)[None, :]
    return make_dataset(ll), A, np.full(n_bins, 1 / n_bins)


@pytest.mark.parametrize("stop_at", [0, 2], ids=["first-redone", "last-committed"])
@pytest.mark.parametrize("method", ["smooth", "most_likely_sequence"])
def test_a_run_stopped_inside_the_float64_recomputation_resumes(tmp_path, monkeypatch,
                                                                 method, stop_at):
    import xhmm.engine.loop as loop
    import xhmm.engine.viterbi as viterbi
    from xhmm.engine.manifest import Manifest

    ds, A, p0 = _recomputing_model()
    folder = tmp_path / "run"
    options = dict(transition=A, initial=p0, chunk_size=5, progress=False)
    redone = []

    def stop_after_redone_chunk(original):
        """Stop once chunk ``stop_at`` was recomputed and its next checkpoint,
        recorded by the manifest before, rewritten (chunks 0-2 are committed
        in float32 when chunk 3 finds float32 lost)."""
        def outputs(self, chunk, *args):
            original(self, chunk, *args)
            if self.precision.float64[chunk.index]:
                redone.append(chunk.index)
                if chunk.index == stop_at:
                    raise RuntimeError("stopped inside the recomputation")
        return outputs

    with monkeypatch.context() as patch:
        # as a kill: the manifest is left as the last commit wrote it
        patch.setattr(Manifest, "record_stop", lambda self, exc: None)
        if method == "smooth":
            patch.setattr(loop._Run, "_forward_outputs",
                          stop_after_redone_chunk(loop._Run._forward_outputs))
        else:
            patch.setattr(viterbi.PathDecoder, "_outputs",
                          stop_after_redone_chunk(viterbi.PathDecoder._outputs))
        with pytest.raises(RuntimeError, match="inside the recomputation"):
            getattr(ds.hmm, method)(memmap_dir=folder, **options)
    assert redone == list(range(stop_at + 1))
    resumed = getattr(ds.hmm, method)(memmap_dir=folder, resume=True, **options)
    fresh = getattr(ds.hmm, method)(**options)
    assert resumed.attrs["xhmm_float64_chunks"] == fresh.attrs["xhmm_float64_chunks"] == 4
    for name in fresh.data_vars:
        np.testing.assert_array_equal(resumed[name].values, fresh[name].values)


def test_a_folder_locked_by_another_process_names_its_pid(model, tmp_path):
    """Another Python process runs xhmm's lock on the folder; this one is refused."""
    import subprocess
    import sys

    folder = tmp_path / "run"
    folder.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from xhmm.engine.storage import FolderLock; "
         f"lock = FolderLock(Path({str(folder)!r})); print('locked', flush=True); "
         "sys.stdin.read(); lock.release()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(xhmm.StorageError, match=rf"\(process {child.pid}\)"):
            _smooth(model, folder)
    finally:
        child.communicate("")
    assert child.returncode == 0
    assert np.isfinite(_smooth(model, folder, overwrite=True).acausal_posterior.values).all()

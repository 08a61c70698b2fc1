"""Faults on purpose in the save and results layer (issue 23, cases 7 and 9).

A save that meets a full disk or a file size limit (a real OS write failure
in a child process: ``RLIMIT_FSIZE``, or a small tmpfs where the machine
allows one without root), a save killed mid-way or between the two renames
of a replacement, temporary memmap folders, a deleted run folder, a
pathological attribute. Each ends in the documented error, with the earlier
file untouched and nothing left behind.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xhmm
from xhmm.cli import main
from xhmm.io.store import _HOST

from conftest import make_dataset, random_model

T, K, CHUNK = 240, 9, 16

#: A child process: saves results of seed 0 at FOLDER/NAME (and at REFERENCE),
#: sets a file size limit (LIMIT > 0), replaces FOLDER/NAME by results of seed
#: 1 with the API or the command line, and reports as JSON on its last line.
CHILD = r"""
import gc, json, os, resource, signal, sys
from pathlib import Path
import numpy as np, xarray as xr, h5py, xhmm
from xhmm.cli import main

how, folder, name, reference, limit = sys.argv[1:6]
folder, limit = Path(folder), int(limit)


def likelihood(seed):
    rng = np.random.default_rng(seed)
    A = rng.random((40, 40)) + 0.05
    return xr.Dataset(
        {"log_likelihood": (("time", "state_bins"), rng.normal(size=(1000, 40)) * 3),
         "transition": (("from_bin", "to_bin"), A / A.sum(1, keepdims=True)),
         "initial": ("state_bins", np.full(40, 1 / 40))},
        coords={"time": np.arange(1000)})


def smooth(seed):
    ds = likelihood(seed)
    return ds.hmm.smooth(progress=False)


old = smooth(0)
for path in (folder / name, Path(reference)):
    xhmm.save_results(old, path, complevel=0, progress=False)
if how == "cli":
    likelihood(1).to_netcdf(folder / "ll.nc")
else:
    new = smooth(1)
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
report = {"error": None, "message": None, "status": None}
try:
    if how == "cli":
        report["status"] = main(["smooth", str(folder / "ll.nc"), "--out", str(folder / name),
                                 "--force", "--complevel", "0", "--no-progress"])
    else:
        xhmm.save_results(new, folder / name, overwrite=True, complevel=0, progress=False)
except Exception as exc:
    report.update(error=type(exc).__name__, message=str(exc))
gc.collect()
report["hdf5_files_open"] = sorted(Path(os.fsdecode(f.name)).name
                                   for f in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE))
report["files"] = sorted(os.listdir(folder))
with xhmm.open_results(folder / name) as now, xhmm.open_results(reference) as before:
    report["unchanged"] = bool(now.load().identical(before.load()))
print(json.dumps(report))
sys.exit(report["status"] or 0)  # the command line's status, unless the exit crashes
"""


def _child(how: str, folder: Path, name: str, reference: Path, limit: int,
           wrapper: tuple[str, ...] = ()) -> tuple[int, dict, str]:
    """Run :data:`CHILD`; its exit status, report and stderr."""
    proc = subprocess.run([*wrapper, sys.executable, "-c", CHILD, how, str(folder), name,
                           str(reference), str(limit)], capture_output=True, text=True,
                          timeout=120)
    lines = proc.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return proc.returncode, report, proc.stderr


@pytest.fixture
def model():
    ll, A, p0 = random_model(np.random.default_rng(7), T, K)
    return make_dataset(ll), A, p0


def _smooth(model, **options):
    ds, A, p0 = model
    return ds.hmm.smooth(transition=A, initial=p0, chunk_size=CHUNK, progress=False, **options)


# -- 7. a full disk during a save ----------------------------------------------

@pytest.mark.parametrize("name", ["r.nc", pytest.param("r.zarr", marks=pytest.mark.slow)])
def test_a_file_size_limit_fails_the_save_cleanly(tmp_path, name):
    """A real EFBIG inside HDF5 (or Zarr): StorageError, old file kept, nothing left open."""
    folder = tmp_path / "out"
    folder.mkdir()
    status, report, stderr = _child("api", folder, name, tmp_path / f"before-{name}", 60_000)
    assert status == 0, stderr[-2000:]
    assert report["error"] == "StorageError"
    assert report["message"].startswith(f"cannot write {str(folder / name)!r}")
    assert "File too large" in report["message"]
    assert report["hdf5_files_open"] == []
    assert report["files"] == [name]  # no temporary file or store
    assert report["unchanged"]
    assert "Traceback" not in stderr and "HDF5" not in stderr


def test_a_file_size_limit_in_the_cli_exits_2_with_one_line(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    status, report, stderr = _child("cli", folder, "r.nc", tmp_path / "before.nc", 60_000)
    assert status == 2, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-2000:]
    assert lines[0].startswith(f"xhmm: error: cannot write {str(folder / 'r.nc')!r}")
    assert "File too large" in lines[0]
    assert report["hdf5_files_open"] in ([], ["ll.nc"])  # the input may stay open
    assert report["files"] == ["ll.nc", "r.nc"]
    assert report["unchanged"]
    with xr.open_dataset(tmp_path / "before.nc") as ds:  # the reference itself is whole
        assert ds.acausal_posterior.shape == (1000, 40)


def _tmpfs_wrapper(folder: Path, size: str) -> tuple[str, ...]:
    """Run a command with a tmpfs of ``size`` at ``folder`` (a private mount namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("no 'unshare' to mount a small tmpfs without root")
    wrapper = ("unshare", "-rm", "sh", "-c",
               f'mount -t tmpfs -o size={size} none "{folder}" && exec "$@"', "sh")
    probe = subprocess.run([*wrapper, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    return wrapper


def test_a_full_tmpfs_fails_the_save_cleanly(tmp_path):
    """ENOSPC: the disk holds the earlier file but not a second one."""
    folder = tmp_path / "small"
    folder.mkdir()
    wrapper = _tmpfs_wrapper(folder, "400k")
    status, report, stderr = _child("api", folder, "r.nc", tmp_path / "before.nc", 0, wrapper)
    assert status == 0, stderr[-2000:]
    assert report["error"] == "StorageError"
    assert "No space left on device" in report["message"]
    assert report["hdf5_files_open"] == []
    assert report["files"] == ["r.nc"]
    assert report["unchanged"]


# -- 9. what killed saves leave behind --------------------------------------------

def _dead_pid() -> int:
    """The PID of a process that has ended."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


KILLED_SAVE = r"""
import os, signal, sys
import numpy as np, xarray as xr, xhmm
path, replace_kill = sys.argv[1], sys.argv[2] == "rename"
ds = xr.Dataset({"log_likelihood": (("time", "state_bins"),
                 np.random.default_rng(1).normal(size=(60, 4)))}, coords={"time": np.arange(60)})
res = ds.hmm.smooth(transition=np.full((4, 4), 0.25), initial=np.full(4, 0.25),
                    time_chunks=20, lazy=True, progress=False)
if replace_kill:  # killed between moving the old store aside and moving the new one in
    from pathlib import Path
    real = os.replace
    def replace(src, dst):
        if Path(dst) == Path(path):
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)
    os.replace = replace
    xhmm.save_results(res, path, overwrite=True, progress=False)
else:  # killed while writing the second block
    def kill(block, block_info=None):
        if block_info[None]["chunk-location"][0] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return block
    res["acausal_posterior"] = res.acausal_posterior.copy(
        data=res.acausal_posterior.data.map_blocks(kill, dtype=np.float32))
    xhmm.save_results(res, path, progress=False)
"""


def _killed_save(path: Path, where: str) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path), where],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


@pytest.mark.parametrize("name", ["r.nc", pytest.param("r.zarr", marks=pytest.mark.slow)])
def test_a_killed_save_leaves_a_temporary_the_next_save_removes(model, tmp_path, name):
    path = tmp_path / name
    _killed_save(path, "write")
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".{name}.") and left[0].endswith(".tmp")
    xhmm.save_results(_smooth(model), path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_only_temporaries_of_ended_saves_are_removed(model, tmp_path):
    path = tmp_path / "r.nc"
    dead, alive = _dead_pid(), os.getppid()
    ended = [f".r.nc.{_HOST}-{dead}-0123abcd.tmp", f".r.nc.{_HOST}-{dead}-4567abcd.tmp"]
    kept = [f".r.nc.{_HOST}-{alive}-89abcdef.tmp",  # a save still running
            f".r.nc.0badc0de-{dead}-0123abcd.tmp",  # another machine's
            ".r.nc.0123abcd.tmp", f".other.nc.{_HOST}-1-0123abcd.tmp", "notes.txt"]  # not ours
    (tmp_path / ended[0]).write_bytes(b"partial")
    (tmp_path / ended[1]).mkdir()  # a Zarr temporary is a folder
    (tmp_path / ended[1] / "chunk").write_bytes(b"partial")
    for name in kept:
        (tmp_path / name).write_text("x")
    xhmm.save_results(_smooth(model), path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "r.nc"])


def test_a_replacement_killed_between_its_renames_is_put_back(model, tmp_path):
    path = tmp_path / "r.zarr"
    first = _smooth(model)
    xhmm.save_results(first, path, progress=False)
    expected = xhmm.open_results(path).load()
    _killed_save(path, "rename")
    assert not path.exists()
    [old] = [p for p in tmp_path.iterdir() if p.name.endswith(".old")]
    assert old.name.startswith(".r.zarr.")
    # Opening the name puts the earlier store back, whole.
    xr.testing.assert_identical(xhmm.open_results(path).load(), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr"]  # the dead .tmp too


def test_a_save_after_an_interrupted_replacement_keeps_the_earlier_store(model, tmp_path):
    path = tmp_path / "r.zarr"
    xhmm.save_results(_smooth(model), path, progress=False)
    expected = xhmm.open_results(path).load()
    _killed_save(path, "rename")
    with pytest.raises(xhmm.StorageError, match="exists; pass overwrite=True"):
        xhmm.save_results(_smooth(model, emit_map=True), path, progress=False)
    xr.testing.assert_identical(xhmm.open_results(path).load(), expected)
    xhmm.save_results(_smooth(model, emit_map=True), path, overwrite=True, progress=False)
    assert "map_state_bin" in xhmm.open_results(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr"]  # no .old, no .tmp


def test_an_old_copy_of_a_finished_replacement_is_removed(model, tmp_path):
    path = tmp_path / "r.zarr"
    xhmm.save_results(_smooth(model), path, progress=False)
    stale = tmp_path / f".r.zarr.{_HOST}-{_dead_pid()}-0123abcd.old"
    shutil.copytree(path, stale)
    xhmm.save_results(_smooth(model), path, overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr"]


# -- 9. temporary memmap folders ----------------------------------------------------

@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    """The system temp dir, for this test alone."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("xhmm-"))


def test_a_temporary_memmap_folder_lives_as_long_as_a_result_uses_it(model, temp_root):
    res = _smooth(model, use_memmap=True)
    [folder] = _folders(temp_root)
    assert res.attrs["xhmm_memmap_dir"] == str(temp_root / folder)
    part = res.acausal_posterior.isel(time=slice(0, 20))
    del res
    gc.collect()
    assert _folders(temp_root) == [folder]  # `part` still reads it
    assert np.isfinite(part.values).all()
    del part
    gc.collect()
    assert _folders(temp_root) == []


@pytest.mark.parametrize("method", ["filter_eager", "viterbi"])
def test_a_temporary_memmap_folder_nothing_reads_is_removed_at_once(model, temp_root, method):
    ds, A, p0 = model
    if method == "viterbi":
        res = ds.hmm.most_likely_sequence(transition=A, initial=p0, use_memmap=True,
                                          chunk_size=CHUNK, progress=False)
    else:
        res = ds.hmm.filter(transition=A, initial=p0, use_memmap=True, lazy=False,
                            chunk_size=CHUNK, progress=False)
    gc.collect()
    assert _folders(temp_root) == []
    assert res.data_vars  # the result holds its data itself


def test_a_failed_run_removes_its_temporary_memmap_folder(model, temp_root):
    ds, A, p0 = model
    ll = ds.log_likelihood.values.copy()
    ll[200, 3] = np.nan  # found when chunk 12 is read, after files were written
    with pytest.raises(xhmm.LikelihoodError, match="time index 200"):
        make_dataset(ll).hmm.smooth(transition=A, initial=p0, use_memmap=True,
                                    chunk_size=CHUNK, progress=False)
    assert _folders(temp_root) == []


def test_temporary_memmap_folders_are_removed_at_exit(temp_root):
    script = ("import numpy as np, xarray as xr, xhmm\n"
              "ds = xr.Dataset({'log_likelihood': (('time', 'state_bins'),"
              " np.zeros((50, 3)))})\n"
              "res = ds.hmm.smooth(transition=np.full((3, 3), 1 / 3), initial=np.full(3, 1 / 3),"
              " use_memmap=True, progress=False)\n"
              "print(res.attrs['xhmm_memmap_dir'])\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TMPDIR": str(temp_root)}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Path(proc.stdout.strip()).parent == temp_root
    assert _folders(temp_root) == []


def test_reading_a_result_whose_run_folder_was_deleted_says_so(model, tmp_path):
    folder = tmp_path / "run"
    res = _smooth(model, memmap_dir=folder)
    shutil.rmtree(folder)
    message = f"the run folder {str(folder)!r} of this result was deleted"
    with pytest.raises(xhmm.StaleResultError, match=message):
        res.acausal_posterior.values
    with pytest.raises(xhmm.StaleResultError, match=message):
        xhmm.save_results(res, tmp_path / "r.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing recreated


# -- 9. a pathological attribute ------------------------------------------------------

DEEP = "[" * 200_000 + "]" * 200_000


def test_info_reports_a_too_deeply_nested_config_as_unreadable(model, tmp_path, capsys):
    res = _smooth(model)
    res.attrs["xhmm_config"] = DEEP
    res.to_netcdf(tmp_path / "deep.nc")
    assert main(["info", str(tmp_path / "deep.nc")]) == 0
    out = capsys.readouterr().out
    assert "time 240" in out and "acausal_posterior" in out
    assert "config: unreadable 'xhmm_config' attribute (maximum recursion depth" in out


def test_open_results_names_a_too_deeply_nested_multiindex(model, tmp_path):
    res = _smooth(model)
    res.attrs["xhmm_multiindex"] = DEEP
    res.to_netcdf(tmp_path / "deep.nc")
    with pytest.raises(xhmm.StorageError, match="attribute 'xhmm_multiindex' is not readable"):
        xhmm.open_results(tmp_path / "deep.nc")

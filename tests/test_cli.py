"""The command line end to end: smooth, filter and info on small NetCDF files."""

import dataclasses
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5netcdf
import numpy as np
import pytest
import xarray as xr

import xhmm
from xhmm.bench.workload import Problem
from xhmm.cli import cli_message, main
from xhmm.cli.decode import config_field_docs
from xhmm.synthetic import simulate_decoding
from xhmm.transitions import to_spec, with_transition

HAS_ZARR = importlib.util.find_spec("zarr") is not None


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A likelihood file holding its model, one without, and the model as .npy/.nc."""
    folder = tmp_path_factory.mktemp("cli")
    ds = simulate_decoding(2.0, seed=4)
    ds.to_netcdf(folder / "full.nc", engine="h5netcdf")
    ds[["log_likelihood"]].to_netcdf(folder / "likelihood.nc", engine="h5netcdf")
    np.save(folder / "transition.npy", ds.transition.values)
    np.save(folder / "initial.npy", ds.initial.values)
    ds[["transition"]].to_netcdf(folder / "transition.nc", engine="h5netcdf")
    return folder, ds


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("xhmm: error: ")
    return err[0]


def test_smooth_end_to_end(files, tmp_path, capsys):
    folder, ds = files
    out = tmp_path / "results.nc"
    rc = main(["smooth", str(folder / "full.nc"), "--out", str(out), "--chunk-size", "300",
               "--emit-map", "--quantize-posteriors", "--no-progress"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "xhmm smooth: 1,000 time steps x 220 state bins" in stdout
    expected = ds.hmm.smooth(chunk_size=300, progress=False)
    with xr.open_dataset(out) as back:  # plain xarray decodes the uint16 storage
        assert back.acausal_posterior.dtype == np.float32
        # uint16 storage: absolute error at most half a step of 1/65534
        np.testing.assert_allclose(back.acausal_posterior.values,
                                   expected.acausal_posterior.values, atol=0.5 / 65534 + 1e-7)
        assert float(back.marginal_log_likelihood) == pytest.approx(
            float(expected.marginal_log_likelihood), rel=1e-12)
        assert "map_position" in back
        config = json.loads(back.attrs["xhmm_config"])
    assert config["chunk_size"] == 300 and config["quantize_posteriors"] is True
    assert config["emit_map"] is True and config["progress"] is False


def test_filter_with_npy_model(files, tmp_path, capsys):
    folder, ds = files
    out = tmp_path / "filtered.nc"
    rc = main(["filter", str(folder / "likelihood.nc"), "--transition",
               str(folder / "transition.npy"), "--initial", str(folder / "initial.npy"),
               "--out", str(out), "--no-progress"])
    assert rc == 0
    with xr.open_dataset(out) as back:
        assert "causal_posterior" in back and "acausal_posterior" not in back
    assert capsys.readouterr().out.startswith("xhmm filter:")


def test_transition_from_netcdf_and_memmap(files, tmp_path):
    folder, _ = files
    out = tmp_path / "r.nc"
    rc = main(["smooth", str(folder / "likelihood.nc"), "--transition",
               str(folder / "transition.nc"), "--initial", str(folder / "full.nc"),
               "--out", str(out), "--use-memmap", "--memmap-dir", str(tmp_path / "mm"),
               "--no-persist-causal", "--no-progress"])
    assert rc == 0
    assert (tmp_path / "mm" / "acausal_posterior.dat").is_file()
    with xr.open_dataset(out) as back:
        assert "causal_posterior" not in back


def test_every_config_field_is_a_documented_flag(capsys):
    docs = config_field_docs()
    assert set(docs) == {f.name for f in dataclasses.fields(xhmm.Config)}
    assert all(spec and text for spec, text in docs.values())
    with pytest.raises(SystemExit) as exit_info:
        main(["smooth", "--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    for name in docs:
        assert "--" + name.replace("_", "-") in usage


@pytest.mark.parametrize("command, given, takers", [
    ("viterbi", ["--emit-entropy"], "xhmm smooth and xhmm filter"),
    ("viterbi", ["--no-persist-causal"], "xhmm smooth and xhmm filter"),
    ("viterbi", ["--posterior-dtype", "uint16"], "xhmm smooth and xhmm filter"),
    ("filter", ["--emit-transition-counts"], "xhmm smooth"),
])
def test_another_commands_flag_is_named_as_such(command, given, takers, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "in.nc", "--out", "out.nc", *given])
    assert exit_info.value.code == 2
    flag = given[0]
    assert (f"xhmm {command}: error: {flag} is an option of {takers}, not of xhmm {command}"
            in capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert flag not in capsys.readouterr().out


def test_info_reports_a_complete_file(files, tmp_path, capsys):
    folder, _ = files
    out = tmp_path / "results.nc"
    assert main(["smooth", str(folder / "full.nc"), "--out", str(out),
                 "--posterior-dtype", "uint16", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "complete: yes" in text
    assert "dimensions: time 1,000, state_bins 220, states 2" in text
    assert "acausal_posterior" in text and "uint16 -> float32" in text
    assert re.search(r"posterior_dtype +\= 'uint16'", text)
    assert "marginal log-likelihood:" in text


def test_info_shows_the_stored_posterior_dtype_of_a_quantized_run(files, tmp_path, capsys):
    folder, _ = files
    out = tmp_path / "results.nc"
    assert main(["smooth", str(folder / "full.nc"), "--out", str(out),
                 "--quantize-posteriors", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "acausal_posterior" in text and "uint16 -> float32" in text
    assert re.search(r"posterior_dtype +\= 'uint16'", text)
    assert re.search(r"quantize_posteriors +\= True", text)


def test_info_reports_missing_chunks(tmp_path, capsys):
    path = tmp_path / "partial.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"time": 100, "state_bins": 4}
        var = f.create_variable("acausal_posterior", ("time", "state_bins"), "f4",
                                chunks=(10, 4))
        var[:30] = 0.25  # 3 of 10 chunks written, as by a save that died
    assert main(["info", str(path)]) == 1
    text = capsys.readouterr().out
    assert "complete: NO (acausal_posterior: 3 of 10 chunks written)" in text
    assert "config: not recorded" in text


def test_info_reports_an_unfinished_save(files, tmp_path, capsys):
    folder, _ = files
    assert main(["smooth", str(folder / "full.nc"), "--out", str(tmp_path / "r.nc"),
                 "--no-progress"]) == 0
    temporary = tmp_path / ".r.nc.0123abcd.tmp"  # the name save_results writes to
    (tmp_path / "r.nc").rename(temporary)
    capsys.readouterr()
    assert main(["info", str(temporary)]) == 1
    assert "complete: NO (a temporary file of a save that did not finish)" in \
        capsys.readouterr().out


# Runs ``python -m xhmm ARGS`` for each ARGS in one interpreter (as runpy does
# for -m), then says which heavy packages got imported; at the end it reaches
# xhmm.smooth, which must import JAX (so the check can see an import).
_IMPORT_PROBE = """
import json, runpy, sys
heavy = ("jax", "numba", "dask", "bokeh")
codes, loaded = [], []
for args in json.loads(sys.argv[1]):
    sys.argv = ["xhmm", *args]
    try:
        runpy.run_module("xhmm", run_name="__main__")
    except SystemExit as exc:
        codes.append(exc.code)
    loaded.append([name for name in heavy if name in sys.modules])
import xarray as xr, xhmm
registered = hasattr(xr.Dataset, "hmm") and hasattr(xr.DataArray, "hmm")
before = "jax" in sys.modules
xhmm.smooth
print(json.dumps([codes, loaded, registered, before, "jax" in sys.modules]))
"""


def test_help_version_and_argument_errors_do_not_import_jax(tmp_path):
    calls = [["--help"], ["--version"], ["smooth", "--help"], ["info", "--help"],
             ["bench", "--help"], ["view", "--help"], ["smooth"], ["nonsense"],
             ["viterbi", str(tmp_path / "l.nc"), "--out", str(tmp_path / "o.nc"), "--emit-map"],
             ["smooth", str(tmp_path / "l.nc"), "--out", str(tmp_path / "o.nc"),
              "--chunk-size", "ten"]]
    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, json.dumps(calls)],
                          capture_output=True, text=True, timeout=120)
    codes, loaded, registered, before, after = json.loads(proc.stdout.splitlines()[-1])
    assert codes == [0, 0, 0, 0, 0, 0, 2, 2, 2, 2], proc.stderr
    assert loaded == [[]] * len(calls)
    assert registered and not before  # import xhmm registers ds.hmm / da.hmm, lazily
    assert after  # the probe sees JAX once a method is reached


#: Config fields that concern posteriors only (none is a flag of xhmm viterbi).
POSTERIOR_FLAGS = ("--posterior-dtype", "--quantize-posteriors", "--lazy-expand",
                   "--time-chunks", "--posterior-out-dtype", "--persist-causal", "--emit-map",
                   "--emit-entropy", "--emit-transition-counts", "--emit-state-aggregates")


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [[], ["demo"], ["bench"], ["smooth"], ["filter"],
                                     ["viterbi"], ["info"], ["view"]], ids=" ".join)
def test_help_is_plain_text_with_named_metavars(capsys, command):
    text = _help(capsys, *command)
    assert text.startswith(f"usage: xhmm {' '.join(command)}".rstrip())
    assert not re.search(r":[a-z]+:`|``", text), "reST markup in help"
    assert "VALUE" not in text
    flags = set(re.findall(r"--[a-z][a-z-]+", text))
    if command == ["viterbi"]:
        assert not flags & set(POSTERIOR_FLAGS)
        assert {"--chunk-size", "--memmap-dir", "--compute-dtype", "--resume"} <= flags
    elif command == ["filter"]:
        assert flags & set(POSTERIOR_FLAGS) == set(POSTERIOR_FLAGS) - {"--emit-transition-counts"}
    elif command == ["smooth"]:
        assert set(POSTERIOR_FLAGS) <= flags
        assert "--memmap-dir DIR" in text and "--compute-dtype DTYPE" in text
        assert "Needs a state coordinate and a smoother run; ds.hmm.fit uses it." in \
            " ".join(text.split())


def _disk_size(path: Path) -> int:
    """Bytes under ``path``, counted here with os.walk."""
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


@pytest.mark.skipif(not HAS_ZARR, reason="zarr is not installed")
def test_zarr_output_size_and_info(files, tmp_path, capsys):
    folder, _ = files
    out = tmp_path / "out.zarr"
    assert main(["smooth", str(folder / "full.nc"), "--out", str(out), "--no-progress"]) == 0
    size = _disk_size(out)
    assert size > 500_000
    assert f"saved {out} ({size / 1e6:,.1f} MB)" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{out}: {size / 1e6:,.1f} MB"
    assert lines[1].startswith("complete: unknown (a Zarr store")
    assert "dimensions: time 1,000, state_bins 220, states 2" in lines
    row = next(line for line in lines if line.startswith("acausal_posterior "))
    on_disk = _disk_size(out / "acausal_posterior")
    assert row.split()[-2:] == [f"{on_disk / 1e3:,.1f}", "kB"]
    assert re.search(r"^  persist_causal +\= True$", "\n".join(lines), re.M)


def test_saved_viterbi_path_keeps_only_its_own_settings(files, tmp_path, capsys):
    folder, _ = files
    out = tmp_path / "path.nc"
    assert main(["viterbi", str(folder / "full.nc"), "--out", str(out), "--chunk-size", "300",
                 "--memmap-dir", str(tmp_path / "mm"), "--no-progress"]) == 0
    assert f"memmap outputs: {tmp_path / 'mm'}" in capsys.readouterr().out
    with xr.open_dataset(out) as back:
        assert "xhmm_memmap_dir" not in back.attrs
        config = json.loads(back.attrs["xhmm_config"])
    assert config["chunk_size"] == 300 and config["memmap_dir"] == str(tmp_path / "mm")
    assert sorted(config) == ["chunk_size", "compute_dtype", "memmap_dir", "overwrite",
                              "progress", "resume", "use_memmap"]
    assert main(["info", str(out)]) == 0
    listed = capsys.readouterr().out.split("config used (xhmm_config):\n", 1)[1]
    assert sorted(line.split("=")[0].strip() for line in listed.splitlines()) == sorted(config)


@pytest.mark.parametrize("launcher", ["console script", "python -m xhmm"])
def test_launchers(tmp_path, launcher):
    script = Path(sys.executable).with_name("xhmm")
    if launcher == "console script":
        assert script.is_file(), "pip install -e . should install the xhmm console script"
        command = [str(script)]
    else:
        command = [sys.executable, "-m", "xhmm"]
    proc = subprocess.run([*command, "info", str(tmp_path / "missing.nc")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"xhmm: error: no results file or Zarr store at '{tmp_path / 'missing.nc'}'")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["smooth", "{tmp}/nothing.nc", "--out", "{tmp}/o.nc"],
         "no such file or directory: '{tmp}/nothing.nc'"),
        (["smooth", "{data}/likelihood.nc", "--out", "{tmp}/o.nc"],
         "no transition given: pass --transition FILE (.npy, NetCDF or Zarr) or "
         "--transition-spec SPEC.json"),
        (["smooth", "{data}/full.nc", "--out", "{tmp}/o.nc", "--posterior-dtype", "int8"],
         "--posterior-dtype must be one of float32, float16, uint16, float64; got 'int8'"),
        (["smooth", "{data}/full.nc", "--out", "{tmp}/o.nc", "--chunk-size", "0"],
         "--chunk-size must be a positive int or \"auto\", got 0"),
        (["smooth", "{data}/full.nc", "--out", "{tmp}/o.nc", "--no-use-memmap",
          "--memmap-dir", "{tmp}/mm"],
         "--no-use-memmap but --memmap-dir '{tmp}/mm' was given; drop --no-use-memmap"),
        (["smooth", "{data}/full.nc", "--out", "{tmp}/o.nc", "--resume"],
         "--resume needs --memmap-dir (the folder of the run to continue)"),
        (["filter", "{data}/full.nc", "--out", "{tmp}/o.nc", "--no-persist-causal",
          "--no-emit-state-aggregates"],
         "filter with --no-persist-causal would keep nothing but the marginal "
         "log-likelihood: no causal_posterior and no summary (--emit-map, "
         "--emit-entropy, --emit-hpd, --emit-consistency, or --emit-state-aggregates "
         "with a 'state' coordinate on state_bins); keep --persist-causal or request a summary, e.g. --emit-map"),
        (["smooth", "{data}/full.nc", "--out", "{data}/full.nc"],
         "exists; pass --force to replace it"),
        (["smooth", "{data}/full.nc", "--out", "{tmp}/no/such/dir/o.nc"],
         "folder '{tmp}/no/such/dir' of --out does not exist"),
        (["filter", "{data}/likelihood.nc", "--transition", "{data}/initial.npy",
          "--initial", "{data}/initial.npy", "--out", "{tmp}/o.nc"],
         "transition must be a square 2-D matrix"),
        (["filter", "{data}/likelihood.nc", "--transition", "{data}/missing.npy",
          "--out", "{tmp}/o.nc"], "no such file: '{data}/missing.npy' (--transition)"),
        (["filter", "{data}/likelihood.nc", "--transition", "{tmp}/bad.nc",
          "--out", "{tmp}/o.nc"], "cannot read '{tmp}/bad.nc' as NetCDF or Zarr"),
        (["filter", "{data}/likelihood.nc", "--transition", "{data}/full.nc",
          "--initial", "{data}/transition.nc", "--out", "{tmp}/o.nc"],
         "'{data}/transition.nc' (--initial) has no variable 'initial'; found: "
         "transition"),
        (["info", "{tmp}/bad.nc"], "cannot open '{tmp}/bad.nc' as NetCDF"),
    ],
)
def test_errors_are_one_line(files, tmp_path, capsys, argv, message):
    folder, _ = files
    (tmp_path / "bad.nc").write_text("not a netcdf file")
    fill = {"tmp": tmp_path, "data": folder}
    rc = main([a.format(**fill) for a in argv])
    assert rc == 2
    assert message.format(**fill) in one_error_line(capsys)
    assert not (tmp_path / "o.nc").exists()


def test_zarr_without_zarr_package_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr raises ImportError
    store = tmp_path / "likelihood.zarr"
    store.mkdir()
    rc = main(["smooth", str(store), "--out", str(tmp_path / "o.nc")])
    assert rc == 2
    assert ("(a Zarr store) needs the 'zarr' package, which is not installed: "
            'pip install "xhmm[zarr]"') in one_error_line(capsys)


@pytest.mark.skipif(not HAS_ZARR, reason="zarr is not installed")
def test_smooth_from_zarr(files, tmp_path):
    _, ds = files
    store = tmp_path / "likelihood.zarr"
    ds.chunk({"time": 250}).to_zarr(store)
    out = tmp_path / "r.nc"
    assert main(["smooth", str(store), "--out", str(out), "--no-progress"]) == 0
    expected = ds.hmm.smooth(progress=False)
    with xr.open_dataset(out) as back:
        np.testing.assert_allclose(back.acausal_posterior.values,
                                   expected.acausal_posterior.values, atol=1e-6)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"xhmm {xhmm.__version__}\n"


def test_probabilities_warn_on_one_line_and_exit_0(files, tmp_path, capsys):
    folder, ds = files
    probabilities = ds.assign(log_likelihood=np.exp(ds.log_likelihood - ds.log_likelihood.max()))
    probabilities.to_netcdf(tmp_path / "probs.nc", engine="h5netcdf")
    out = tmp_path / "r.nc"
    assert main(["smooth", str(tmp_path / "probs.nc"), "--out", str(out),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["xhmm: warning: every finite value of log_likelihood in time steps 0 to "
                   "999 is between 0 and 1: these look like probabilities; pass np.log(...) "
                   "of them"]
    assert out.is_file()


def test_chunk_size_auto_flag(files, tmp_path, capsys):
    folder, _ = files
    n_time = xr.open_dataset(folder / "full.nc").sizes["time"]
    assert main(["smooth", str(folder / "full.nc"), "--out", str(tmp_path / "r.nc"),
                 "--chunk-size", "auto", "--memmap-dir", str(tmp_path / "mm"),
                 "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "mm" / "manifest.json").read_text())
    assert manifest["result_config"]["chunk_size"] == min(n_time, 5_000)
    with pytest.raises(SystemExit):
        main(["smooth", str(folder / "full.nc"), "--out", str(tmp_path / "o.nc"),
              "--chunk-size", "ten"])
    assert "expected an int or auto, got 'ten'" in capsys.readouterr().err


def test_memmap_dir_alone_means_memmap_outputs(files, tmp_path):
    folder, _ = files
    assert main(["smooth", str(folder / "full.nc"), "--out", str(tmp_path / "r.nc"),
                 "--memmap-dir", str(tmp_path / "mm"), "--no-progress"]) == 0
    assert (tmp_path / "mm" / "acausal_posterior.dat").is_file()


def test_errors_name_flags_not_keywords(files, tmp_path, capsys):
    folder, _ = files
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "precious.txt").write_text("x")
    rc = main(["smooth", str(folder / "full.nc"), "--out", str(tmp_path / "r.nc"),
               "--memmap-dir", str(tmp_path / "mm"), "--no-progress"])
    assert rc == 2
    assert one_error_line(capsys) == (
        f"xhmm: error: --memmap-dir '{tmp_path / 'mm'}' holds files xhmm did not write "
        "(precious.txt); choose another folder (--overwrite replaces only the folder of an "
        "earlier xhmm run)")


@pytest.mark.parametrize("message, printed", [
    ("Config.quantize_posteriors=True means posterior_dtype='uint16', but "
     "posterior_dtype='float16' was also given",
     "--quantize-posteriors means --posterior-dtype 'uint16', but --posterior-dtype "
     "'float16' was also given"),
    ("cannot resume the run in 'run': it was started with different settings or "
     "inputs:\n  Config.chunk_size: 16 in the manifest, 32 now",
     "cannot resume the run in 'run': it was started with different settings or "
     "inputs: --chunk-size: 16 in the manifest, 32 now"),
    ("float32 underflowed; retry with compute_dtype='float64'",
     "float32 underflowed; retry with --compute-dtype 'float64'"),
    ("Config.progress must be True, False or None, got 'yes'",
     "--progress must be True, False or None, got 'yes'"),
    # not Config keywords: prose, other names, an attribute containing a field name
    ("no 'transition' given: pass transition=... or add a variable 'transition'",
     "no 'transition' given: pass transition=... or add a variable 'transition'"),
    ("no run to resume in 'run'; see the xhmm_memmap_dir attribute",
     "no run to resume in 'run'; see the xhmm_memmap_dir attribute"),
])
def test_cli_message_translates_config_keywords(message, printed):
    assert cli_message(message) == printed
@pytest.fixture(scope="module")
def structured(tmp_path_factory):
    """A NonLocal model with a time-varying discrete transition, as files.

    ``spec.json`` and ``variables.nc`` (the likelihood with the arrays the
    spec names), and ``stored.nc`` (the model stored with
    ``with_transition``), beside the API result.
    """
    folder = tmp_path_factory.mktemp("structured")
    problem = Problem(150, 60, seed=5, model="nonlocal-2d-tv")
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), problem.in_ram()),
                     "initial": ("state_bins", problem.initial)}, coords=problem.coords())
    spec, variables = to_spec(problem.transition, prefix="model")
    (folder / "spec.json").write_text(json.dumps(spec))
    ds.assign(variables).to_netcdf(folder / "variables.nc")
    with_transition(ds, problem.transition).to_netcdf(folder / "stored.nc")
    expected = ds.hmm.smooth(transition=problem.transition, chunk_size=40, progress=False)
    return folder, expected


@pytest.mark.parametrize("how", ["--transition-spec", "stored"])
def test_structured_transition_matches_the_api(structured, tmp_path, capsys, how):
    folder, expected = structured
    out = tmp_path / "r.nc"
    argv = (["smooth", str(folder / "variables.nc"), "--transition-spec",
             str(folder / "spec.json")] if how == "--transition-spec"
            else ["smooth", str(folder / "stored.nc")])
    assert main([*argv, "--out", str(out), "--chunk-size", "40", "--no-progress"]) == 0
    capsys.readouterr()
    with xr.open_dataset(out) as back:
        for name in ("causal_posterior", "acausal_posterior", "acausal_state_probabilities"):
            np.testing.assert_array_equal(back[name].values, expected[name].values)
        assert float(back.marginal_log_likelihood) == float(expected.marginal_log_likelihood)
        plan = json.loads(back.attrs["xhmm_transition"])
    assert plan["kind"] == "blocks" and plan["discrete"] == "time-varying"
    assert "Non-Local Continuous->Non-Local Continuous: separable 6x6" in plan["blocks"]


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda path: path.write_text("{not json"),
         "cannot read '{spec}' (--transition-spec) as JSON"),
        (lambda path: path.write_text(json.dumps(
            {"kind": "blocks", "discrete": "model_discrete",
             "blocks": [{"from": "Local", "to": "Local", "kind": "banded"}]})),
         "transition spec: blocks[0]: unknown kind 'banded'"),
        (lambda path: path.write_text(json.dumps(
            {"kind": "blocks", "discrete": "elsewhere", "blocks": []})),
         "transition spec: discrete names the variable 'elsewhere', which is not there"),
        (lambda path: None, "no such file: '{spec}' (--transition-spec)"),
    ],
    ids=["json", "kind", "variable", "missing"],
)
def test_transition_spec_errors_are_one_line(structured, tmp_path, capsys, write, message):
    folder, _ = structured
    spec = tmp_path / "spec.json"
    write(spec)
    rc = main(["smooth", str(folder / "variables.nc"), "--transition-spec", str(spec),
               "--out", str(tmp_path / "o.nc")])
    assert rc == 2
    assert message.format(spec=spec) in one_error_line(capsys)
    assert not (tmp_path / "o.nc").exists()


def test_transition_and_spec_exclude_each_other(structured, tmp_path, capsys):
    folder, _ = structured
    with pytest.raises(SystemExit) as exit_info:
        main(["smooth", str(folder / "variables.nc"), "--transition", "a.npy",
              "--transition-spec", str(folder / "spec.json"), "--out", str(tmp_path / "o.nc")])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_an_interrupt_is_one_line_and_exit_130(files, tmp_path, monkeypatch, capsys):
    """Ctrl-C during a run: one ``xhmm: interrupted`` line, status 130, no traceback."""
    from xhmm.cli import decode

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(decode, "run", interrupted)
    folder, _ = files
    assert main(["smooth", str(folder / "full.nc"), "--out", str(tmp_path / "r.nc")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xhmm: interrupted"), err


@pytest.mark.slow
def test_sigint_leaves_a_resumable_run(tmp_path):
    """A real SIGINT to ``xhmm smooth``: status 130, one line, and --resume finishes it.

    ``slow`` (a 600,000-step run, interrupted, then resumed to the end); the
    fast forms are the in-process interrupt above and tests/test_memmap_resume.py.
    """
    T, K = 600_000, 24
    x = np.arange(K)
    A = np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2)
    A /= A.sum(axis=1, keepdims=True)
    ll = np.random.default_rng(0).normal(size=(T, K)).astype(np.float32)
    xr.Dataset({"log_likelihood": (("time", "state_bins"), ll),
                "transition": (("from", "to"), A),
                "initial": ("state_bins", np.full(K, 1 / K))}
               ).to_netcdf(tmp_path / "ll.nc", engine="h5netcdf")
    run = tmp_path / "run"
    command = [sys.executable, "-m", "xhmm", "smooth", str(tmp_path / "ll.nc"), "--out",
               str(tmp_path / "r.nc"), "--memmap-dir", str(run), "--chunk-size", "5000"]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for _ in range(600):  # until the forward pass has committed a chunk
        manifest = run / "manifest.json"
        if manifest.exists() and json.loads(manifest.read_text()).get("forward_done", 0):
            break
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "Traceback" not in err and err.strip().startswith("xhmm: interrupted"), err
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r.nc").exists()

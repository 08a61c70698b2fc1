"""The benchmark harness end to end at tiny sizes (no wall-clock thresholds)."""

import gc
import json
import math
import re

import numpy as np
import pytest
import xarray as xr

import xhmm.kernels.operators as operators
from conftest import random_model
from tolerances import F32_ATOL
from xhmm.bench.baselines import numpy_forward_backward
from xhmm.bench.memory import RssSampler
from xhmm.bench.report import write_plots
from xhmm.bench.workload import Problem
from xhmm.cli import main
from xhmm.kernels.hmm import backward_chunk, forward_chunk


def test_bench_end_to_end(tmp_path, capsys):
    status = main([
        "bench", "-T", "200", "-K", "16", "--chunk-size", "64", "--repeats", "2",
        "--baselines", "numpy", "--memmap", "--out", str(tmp_path), "--name", "tiny",
    ])
    assert status == 0
    assert "x numpy" in capsys.readouterr().out
    doc = json.loads((tmp_path / "tiny.json").read_text())
    assert {"meta", "summary", "records", "table", "plots"} <= set(doc)
    assert doc["meta"]["jax_backend"] and doc["meta"]["args"]["n_time"] == 200
    rows = {r["impl"]: r for r in doc["summary"]}
    assert set(rows) == {"xhmm", "numpy"}
    for row in rows.values():
        assert row["status"] == "ok" and row["rounds"] == 1
        assert row["wall_s"] > 0 and row["per_step_us"] > 0
        assert row["ratio_to_numpy"] > 0
        assert row["compiles_timed"] == 0
        mem = row["memory"]
        for key in ("peak_anon", "peak_file", "start_anon", "ru_maxrss"):
            assert mem[key] > 0
        assert mem["peak_anon"] >= mem["start_anon"]
        assert mem["device_peak"] == "n/a" or mem["device_peak"] > 0
        # causal + acausal float32 posteriors at least
        assert row["output_bytes"] >= 2 * 200 * 16 * 4
    assert rows["numpy"]["ratio_to_numpy"] == 1.0
    ours = rows["xhmm"]
    assert ours["compile_s"] > 0 and ours["compiles_warmup"] >= 1
    assert ours["netcdf_bytes"] > 0 and ours["memmap_bytes"] >= 2 * 200 * 16 * 4
    assert ours["save_s"] > 0
    # same model, same data: the two marginal log-likelihoods agree
    assert math.isclose(ours["marginal_log_likelihood"],
                        rows["numpy"]["marginal_log_likelihood"], rel_tol=1e-5)
    assert doc["plots"] == []  # one size: nothing to plot


def test_plots_of_sweeps(tmp_path):
    base = {"status": "ok", "chunk_size": 64, "compile_s": 0.1,
            "memory": {"peak_anon": 2**20, "peak_file": 2**20}}
    rows = [
        {**base, "model": "dense", "impl": impl, "n_time": n_time, "n_bins": n_bins,
         "wall_s": 1e-3 * n_time * n_bins, "per_step_us": n_bins / 10}
        for impl in ("xhmm", "numpy")
        for n_time, n_bins in ((100, 8), (200, 8), (100, 16))
    ]
    written = write_plots(rows, tmp_path / "sweep")
    assert sorted(p.name for p in written) == [
        "sweep-memory_vs_T.png", "sweep-time_vs_K.png", "sweep-time_vs_T.png"]
    assert all(p.stat().st_size > 0 for p in written)


def test_numpy_baseline_matches_reference(reference):
    problem = Problem(90, 7, seed=3)
    ll = problem.in_ram()
    filtered, smoothed, mll = numpy_forward_backward(
        ll, problem.transition, problem.initial, chunk_size=16, dtype="float64")
    ref_f, ref_s, ref_mll = reference(ll, problem.transition, problem.initial)
    np.testing.assert_allclose(filtered, ref_f, atol=1e-12)
    np.testing.assert_allclose(smoothed, ref_s, atol=1e-12)
    assert math.isclose(mll, ref_mll, rel_tol=1e-12)


def test_workload_does_not_depend_on_how_it_is_held(tmp_path):
    problem = Problem(12_345, 5, seed=1)
    ram = problem.in_ram()
    np.testing.assert_array_equal(np.asarray(problem.lazy()), ram)
    np.testing.assert_array_equal(problem.log_likelihood("memmap", tmp_path), ram)


def test_rss_sampler_sees_an_allocation():
    with RssSampler(interval=0.001) as sampler:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        block.sum()
    del block
    result = sampler.result
    assert result["peak_anon"] - result["start_anon"] >= 48 * 2**20
    assert result["samples"] >= 2


def _while_bodies(hlo: str) -> list[str]:
    """Text of each while-loop body computation of compiled HLO, with the
    computations it calls (fusions), so layout checks see the whole step."""
    blocks = re.split(r"\n(?=%|ENTRY )", hlo)
    by_name = {b.split(" ", 1)[0].lstrip("%"): b for b in blocks}

    def with_callees(name: str) -> str:
        text = by_name[name]
        called = re.findall(r"calls=%([\w.\-]+)", text)
        return "\n".join([text, *(with_callees(c) for c in called if c in by_name)])

    return [with_callees(b) for b in re.findall(r"body=%([\w.\-]+)", hlo)]


def _compiled_scans(op, K: int, C: int) -> list[str]:
    """Compiled HLO text of the forward and backward kernels of one sequence."""
    f32 = np.float32
    p = np.full((1, K), 1 / K, f32)
    n_valid = np.array([C], np.int32)
    fwd = forward_chunk.lower(p, True, np.zeros((1, C, K), f32), n_valid, op, None, p)
    bwd = backward_chunk.lower(p, np.array([True]), np.full((1, C, K), 1 / K, f32), n_valid,
                               op, None)
    return [stage.compile().as_text() for stage in (fwd, bwd)]


def test_compiled_scans_read_the_matrix_along_rows():
    """The per-step products contract the matrix's contiguous axis, with no
    transposed copy of it in (or before) either loop."""
    K, C = 64, 10
    f32 = np.float32
    op = operators.dense_operator(np.full((K, K), 1 / K), f32, 1)
    for text in _compiled_scans(op, K, C):
        assert not re.search(rf"f32\[{K},{K}\]\{{[\d,]+\}} (transpose|copy)\(", text)
        (body,) = _while_bodies(text)
        # (K, K) @ (K, 1): the matrix is the left operand, contracted on its
        # minor (contiguous) axis; prev @ A would show f32[1,K] and dims={0}
        dots = re.findall(r"= f32\[(\d+),1\]\{[\d,]+\} dot\([^)]*\), "
                          r"lhs_contracting_dims=\{1\}", body)
        assert dots == [str(K)]

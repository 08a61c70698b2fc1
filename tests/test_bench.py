"""The benchmark harness end to end at tiny sizes (no wall-clock thresholds)."""

import json
import math
import re

import numpy as np
import pytest

from tolerances import F32_ATOL
from xhmm.bench.baselines import numpy_forward_backward
from xhmm.bench.memory import RssSampler
from xhmm.bench.report import write_plots
from xhmm.bench.workload import Problem
from xhmm.cli import main
from xhmm.errors import InputError
from xhmm.kernels.hmm import backward_chunk, forward_chunk
from xhmm.kernels.operators import dense_operator


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


@pytest.mark.slow
def test_bench_structured_models(tmp_path, capsys):
    """Blocks against the same model through the dense path and the NumPy loop;
    the time-varying model against the static one (four worker processes, so
    ``slow``; test_bench_end_to_end is the fast form of a bench run)."""
    status = main([
        "bench", "--model", "nonlocal-2d,nonlocal-2d-tv", "-T", "150", "-K", "60",
        "--chunk-size", "64", "--repeats", "1", "--baselines", "numpy,xhmm-dense",
        "--no-save", "--out", str(tmp_path), "--name", "structured",
    ])
    assert status == 0
    table = capsys.readouterr().out
    for column in ("model", "x dense", "max |d| dense", "x static"):
        assert column in table
    doc = json.loads((tmp_path / "structured.json").read_text())
    rows = {(r["model"], r["impl"]): r for r in doc["summary"]}
    assert set(rows) == {("nonlocal-2d", "xhmm"), ("nonlocal-2d", "numpy"),
                         ("nonlocal-2d", "xhmm-dense"), ("nonlocal-2d-tv", "xhmm")}
    assert all(r["status"] == "ok" and r["compiles_timed"] == 0 for r in rows.values())
    ours = rows["nonlocal-2d", "xhmm"]
    assert ours["ratio_to_dense"] > 0 and ours["ratio_to_numpy"] > 0
    # the same model: posteriors within float32 rounding, equal likelihoods
    assert ours["max_abs_diff_vs_dense"] <= F32_ATOL
    for impl in ("numpy", "xhmm-dense"):
        assert math.isclose(ours["marginal_log_likelihood"],
                            rows["nonlocal-2d", impl]["marginal_log_likelihood"], rel_tol=1e-5)
    varying = rows["nonlocal-2d-tv", "xhmm"]
    assert varying["ratio_to_static"] > 0 and varying["ratio_to_numpy"] is None


@pytest.mark.parametrize(
    "model, n_bins, n_state_bins, n_states",
    [("dense", 40, 40, 0), ("nonlocal-2d", 10_650, 10_660, 4), ("nonlocal-2d", 60, 74, 4),
     ("contfrag-1d", 1_000, 1_000, 2), ("decoder-1d", 300, 300, 1),
     ("contfrag-1d-tv", 40, 40, 2)],
)
def test_workload_layouts(model, n_bins, n_state_bins, n_states):
    problem = Problem(30, n_bins, model=model)
    assert problem.n_state_bins == n_state_bins
    assert int(problem.interior.sum()) == n_bins
    assert len(set(problem.labels)) == n_states if n_states else problem.labels is None
    assert problem.initial.sum() == pytest.approx(1.0)
    assert not problem.initial[~problem.interior].any()


@pytest.mark.parametrize("model", ["nonlocal-2d", "contfrag-1d", "decoder-1d"])
def test_workload_dense_equivalent(model):
    problem = Problem(10, 60, model=model)
    dense = problem.dense_transition()
    mask = problem.interior
    np.testing.assert_allclose(dense[mask].sum(axis=1), 1.0, rtol=1e-12)
    assert not dense[:, ~mask].any()
    ll, A, p0 = problem.interior_inputs(problem.in_ram())
    assert ll.shape == (10, 60) and A.shape == (60, 60) and np.isfinite(ll).all()


def test_workload_size_and_time_varying_errors():
    with pytest.raises(InputError, match="even number of interior bins K >= 4"):
        Problem(10, 61, model="nonlocal-2d")
    with pytest.raises(InputError, match="unknown benchmark model 'grid'"):
        Problem(10, 60, model="grid")
    with pytest.raises(InputError, match="no single dense matrix"):
        Problem(10, 60, model="nonlocal-2d-tv").dense_transition()


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


@pytest.mark.parametrize("model, n_bins", [("dense", 5), ("nonlocal-2d", 18)])
def test_workload_does_not_depend_on_how_it_is_held(tmp_path, model, n_bins):
    problem = Problem(12_345, n_bins, seed=1, model=model)
    ram = problem.in_ram()
    np.testing.assert_array_equal(np.asarray(problem.lazy()), ram)
    np.testing.assert_array_equal(problem.log_likelihood("memmap", tmp_path), ram)
    assert np.isnan(ram[:, ~problem.interior]).all()


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


def test_compiled_scans_read_the_matrix_along_rows():
    """The per-step products contract the matrix's contiguous axis, with no
    transposed copy of it in (or before) either loop."""
    K, C = 64, 10
    f32 = np.float32
    op = dense_operator(np.full((K, K), 1 / K), f32, 1)
    p = np.full((1, K), 1 / K, f32)
    n_valid = np.array([C], np.int32)
    fwd = forward_chunk.lower(p, True, np.zeros((1, C, K), f32), n_valid, op, None,
                              p).compile()
    bwd = backward_chunk.lower(p, np.array([True]), np.full((1, C, K), 1 / K, f32), n_valid,
                               op, None).compile()
    for compiled in (fwd, bwd):
        text = compiled.as_text()
        assert not re.search(rf"f32\[{K},{K}\]\{{[\d,]+\}} (transpose|copy)\(", text)
        (body,) = _while_bodies(text)
        # (K, K) @ (K, 1): the matrix is the left operand, contracted on its
        # minor (contiguous) axis; prev @ A would show f32[1,K] and dims={0}
        dots = re.findall(r"= f32\[(\d+),1\]\{[\d,]+\} dot\([^)]*\), "
                          r"lhs_contracting_dims=\{1\}", body)
        assert dots == [str(K)]

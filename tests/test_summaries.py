"""HPD and posterior-consistency summaries (``emit_hpd``, ``emit_consistency``).

Each summary the engine computes chunk by chunk is compared with a float64
NumPy computation written here on the full eager posterior xhmm returns
(sort, cumulative sum, threshold, region). Tolerances:

* The threshold is one of the posterior's own values and the region a set of
  bins, so both are compared exactly, at steps where the reference's running
  sum crosses the level at least :data:`MARGIN` away from it (the float32
  running sum over K <= 40 values is off by at most ~K * 2**-24 < 3e-6): the
  test data are checked to have every step so, so nothing is skipped.
* Areas: exact counts times the grid step, stored in float32 (rtol 1e-6).
* KL divergence: float32 log-likelihood rows (shifted in float64, rounded
  once) and float32 logs: 2e-5 absolute.
* ``compute_dtype="float64"`` with float64 posteriors: everything to 1e-12
  except the float32 storage of the summaries (rtol 2**-24).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xhmm
from conftest import underflow_model
from xhmm.engine.manifest import Manifest
from xhmm.frontend.hpd import bin_sizes

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 1e-5
LEVEL = 0.8
T = 40
N_POS = 12  # positions per continuous state
STEP = 2.5  # cm


# -- the reference ---------------------------------------------------------


def reference_threshold(p: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Threshold of each row of ``p`` (NaN bins ignored), and its crossing margin."""
    p = np.where(np.isnan(p), 0.0, p).astype(np.float64)
    desc = np.sort(p, axis=1)[:, ::-1]
    cum = np.cumsum(desc, axis=1)
    target = level * cum[:, -1]
    reached = cum >= target[:, None]
    index = np.where(reached.any(axis=1), reached.argmax(axis=1), p.shape[1] - 1)
    rows = np.arange(len(p))
    before = np.where(index > 0, cum[rows, index - 1], -np.inf)
    margin = np.minimum(target - before, cum[rows, index] - target)
    return desc[rows, index], margin


def reference_summaries(posterior, log_lik, level, sizes, states):
    """The summaries of one sequence: ``posterior`` (T, N) with NaN outside the interior,
    ``log_lik`` (T, N) as the engine reads it (missing rows 0), ``sizes`` (N,)."""
    interior = ~np.isnan(posterior[0])
    p = np.where(interior, posterior, 0.0).astype(np.float64)
    thr, margin = reference_threshold(p, level)
    region = interior & (p >= thr[:, None])
    out = {"hpd_threshold": thr, "hpd_size": region.sum(axis=1),
           "hpd_area": (region * sizes).sum(axis=1), "margin": margin}
    labels = list(dict.fromkeys(states))
    member = np.array([[s == label for label in labels] for s in states], dtype=float)
    out["hpd_state_size"] = region @ member
    out["hpd_state_area"] = (region * sizes) @ member
    ll = np.where(interior, log_lik.astype(np.float64), -np.inf)
    q = np.exp(ll - ll.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    out["posterior_consistency_kl"] = terms.sum(axis=1)
    q_thr, q_margin = reference_threshold(np.where(interior, q, np.nan), level)
    in_q = interior & (q >= q_thr[:, None])
    smaller = np.maximum(np.minimum(region.sum(axis=1), in_q.sum(axis=1)), 1)
    out["posterior_consistency_hpd_overlap"] = (region & in_q).sum(axis=1) / smaller
    out["margin"] = np.minimum(margin, q_margin)
    return out


def check(result, reference, *, exact_dtype=False, where=np.s_[:]):
    """Compare a result's summaries (at ``where``) with :func:`reference_summaries`."""
    assert (reference["margin"] > MARGIN).all(), "test data too close to a tie"
    got = {name: np.asarray(result[name].values)[where] for name in reference
           if name != "margin" and name in result}
    assert set(got) >= {"hpd_threshold", "hpd_size"}
    for name, values in got.items():
        want = reference[name]
        if name == "posterior_consistency_kl":
            atol = 1e-12 if exact_dtype else 2e-5
            np.testing.assert_allclose(values, want, rtol=2**-23, atol=atol, err_msg=name)
        elif name == "hpd_threshold":
            np.testing.assert_allclose(values, want.astype(np.float32), rtol=2**-24 if exact_dtype
                                       else 0, atol=0, err_msg=name)
        else:
            np.testing.assert_allclose(values, want, rtol=1e-6, atol=0, err_msg=name)


# -- data ------------------------------------------------------------------


def one_d(rng, n_time=T, missing=True):
    """Three states (a Local bin without position, two of N_POS positions), two exterior
    bins, a missing step and impossible (-inf) bins."""
    pos = np.arange(N_POS) * STEP
    position = np.concatenate([[np.nan], pos, pos])
    states = ["Local"] + ["Continuous"] * N_POS + ["Fragmented"] * N_POS
    interior = np.ones(position.size, dtype=bool)
    interior[[1 + N_POS - 1, 1 + N_POS]] = False  # an end bin of each continuous state
    n = position.size
    centre = 12 + 8 * np.sin(np.arange(n_time) / 5)
    ll = -0.5 * ((position[None, 1:] - centre[:, None]) / 6.0) ** 2
    ll = np.concatenate([np.full((n_time, 1), -1.5), ll], axis=1)
    ll += rng.normal(0, 0.7, ll.shape)
    ll[5, 3:6] = -np.inf
    ll[:, ~interior] = np.nan
    A = rng.random((n, n)) ** 3 + np.eye(n) * 4
    A[:, ~interior] = 0
    A /= A.sum(axis=1, keepdims=True)
    p0 = interior / interior.sum()
    ds = xr.Dataset(
        {"log_likelihood": (("time", "state_bins"), ll.astype(np.float32))},
        coords={"time": np.arange(n_time) * 0.002,
                "position": ("state_bins", position, {"units": "cm"}),
                "state": ("state_bins", states),
                "is_interior": ("state_bins", interior)})
    is_missing = np.zeros(n_time, dtype=bool)
    if missing:
        is_missing[9] = True
    sizes = np.where(np.isnan(position), 0.0, STEP)
    return ds, A, p0, is_missing, sizes, states


def engine_rows(ds, is_missing):
    """The log-likelihood as the engine reads it: missing rows flat."""
    ll = ds.log_likelihood.values.astype(np.float64)
    return np.where(is_missing[:, None], 0.0, ll)


@pytest.fixture(scope="module")
def model():
    return one_d(np.random.default_rng(3))


# -- tests -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["smooth", "filter"])
@pytest.mark.parametrize("chunk_size", [1, 7, T])
def test_summaries_equal_numpy_on_the_eager_posterior(model, method, chunk_size):
    ds, A, p0, is_missing, sizes, states = model
    res = getattr(ds.hmm, method)(transition=A, initial=p0, is_missing=is_missing,
                                  chunk_size=chunk_size, emit_hpd=LEVEL,
                                  emit_consistency=True, progress=False)
    kind = "acausal" if method == "smooth" else "causal"
    posterior = res[f"{kind}_posterior"].values
    check(res, reference_summaries(posterior, engine_rows(ds, is_missing), LEVEL, sizes,
                                   states))
    assert res.hpd_area.attrs["units"] == "cm" and res.hpd_area.attrs["hpd_level"] == LEVEL
    assert list(res.hpd_state_size.states.values) == ["Local", "Continuous", "Fragmented"]
    # the missing step: a flat likelihood, the impossible bins: KL still finite
    assert np.isfinite(res.posterior_consistency_kl.values).all()


def test_float64_summaries_equal_numpy(model):
    ds, A, p0, is_missing, sizes, states = model
    res = ds.hmm.smooth(transition=A, initial=p0, is_missing=is_missing, chunk_size=7,
                        emit_hpd=LEVEL, emit_consistency=True, compute_dtype="float64",
                        posterior_dtype="float64", progress=False)
    check(res, reference_summaries(res.acausal_posterior.values, engine_rows(ds, is_missing),
                                   LEVEL, sizes, states), exact_dtype=True)


def test_summaries_of_a_2d_grid_are_areas():
    rng = np.random.default_rng(5)
    xs, ys = np.meshgrid(np.arange(6) * 2.0, np.arange(5) * 3.0, indexing="ij")
    x, y = xs.ravel(), ys.ravel()
    n = x.size
    cx = 5 + 3 * np.cos(np.arange(T) / 4)
    cy = 6 + 4 * np.sin(np.arange(T) / 4)
    ll = -0.5 * ((x - cx[:, None]) ** 2 + (y - cy[:, None]) ** 2) / 9 + rng.normal(0, .5, (T, n))
    A = np.exp(-((x[:, None] - x) ** 2 + (y[:, None] - y) ** 2) / 20)
    A /= A.sum(axis=1, keepdims=True)
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll.astype(np.float32))},
                    coords={"x_position": ("state_bins", x, {"units": "cm"}),
                            "y_position": ("state_bins", y, {"units": "cm"})})
    res = ds.hmm.smooth(transition=A, initial=np.full(n, 1 / n), chunk_size=7,
                        emit_hpd=0.9, emit_consistency=True, progress=False)
    ref = reference_summaries(res.acausal_posterior.values, ll, 0.9, np.full(n, 6.0),
                              ["s"] * n)
    check(res, ref)
    assert "hpd_state_size" not in res  # no state coordinate
    assert res.hpd_area.attrs["units"] == "cm^2"
    assert res.hpd_area.attrs["grid_step"] == [2.0, 3.0]


def test_sequences_and_their_ends(model):
    ds, A, p0, _, sizes, states = model
    rng = np.random.default_rng(8)
    other = one_d(rng, missing=False)[0].log_likelihood
    seqs = xr.concat([ds.log_likelihood, other.isel(time=slice(0, 29))], "sequence",
                     join="outer").to_dataset()
    res = seqs.hmm.smooth(transition=A, initial=p0, chunk_size=7, emit_hpd=LEVEL,
                          emit_consistency=True, progress=False)
    for s, n in enumerate([T, 29]):
        one = res.isel(sequence=s)
        rows = seqs.log_likelihood.values[s, :n]
        ref = reference_summaries(one.acausal_posterior.values[:n], rows, LEVEL, sizes,
                                  states)
        check(one, ref, where=np.s_[:n])
        assert np.isnan(one.hpd_threshold.values[n:]).all()
        assert np.isnan(one.hpd_state_area.values[n:]).all()


def test_no_stored_posterior(model):
    """map_estimate (persist_causal=False, no acausal posterior kept) gives the
    smoother's summaries; a filter keeping only them is allowed."""
    ds, A, p0, is_missing, _, _ = model
    kw = dict(transition=A, initial=p0, is_missing=is_missing, chunk_size=7, emit_hpd=LEVEL,
              emit_consistency=True, progress=False)
    full = ds.hmm.smooth(**kw)
    only = ds.hmm.map_estimate(**kw)
    names = ["hpd_threshold", "hpd_size", "hpd_area", "hpd_state_size", "hpd_state_area",
             "posterior_consistency_kl", "posterior_consistency_hpd_overlap"]
    assert "acausal_posterior" not in only and "causal_posterior" not in only
    for name in names:
        np.testing.assert_array_equal(only[name].values, full[name].values, err_msg=name)
    filtered = ds.hmm.filter(**{**kw, "emit_consistency": False}, persist_causal=False,
                             emit_state_aggregates=False)
    assert set(filtered.data_vars) >= {"hpd_threshold", "hpd_area"}
    assert "causal_posterior" not in filtered


def test_reading_the_likelihood_again_leaves_the_posterior_alone():
    """The smoother reads each chunk's likelihood rows again for the consistency
    summaries into the reader's reused buffers: none may be overwritten while the
    device still reads it. With one buffer too few the next read overwrote the rows
    of a chunk being smoothed and the posterior changed by 0.98 (4 runs of 4 on 2
    CPU cores: the device is still busy when the host reads)."""
    rng = np.random.default_rng(0)
    n_time, n_bins = 300, 400
    ll = (rng.normal(size=(n_time, n_bins)) * 3).astype(np.float32)
    A = rng.random((n_bins, n_bins)) + 0.01
    A /= A.sum(axis=1, keepdims=True)
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)})
    kw = dict(transition=A, initial=np.full(n_bins, 1 / n_bins), chunk_size=50,
              progress=False)
    plain = ds.hmm.smooth(**kw)
    checked = ds.hmm.smooth(emit_consistency=True, **kw)
    np.testing.assert_array_equal(checked.acausal_posterior.values,
                                  plain.acausal_posterior.values)
    p = checked.acausal_posterior.values.astype(np.float64)
    q = np.exp(ll - ll.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(checked.posterior_consistency_kl.values,
                               (p * np.log(p / q)).sum(axis=1), rtol=1e-4, atol=2e-5)


def test_memmap_run_interrupted_and_resumed_and_reopened(model, tmp_path, monkeypatch):
    ds, A, p0, is_missing, _, _ = model
    kw = dict(transition=A, initial=p0, is_missing=is_missing, chunk_size=7, emit_hpd=LEVEL,
              emit_consistency=True, persist_causal=False, progress=False)
    fresh = ds.hmm.smooth(**kw)
    folder = tmp_path / "run"
    import xhmm.engine.loop as loop

    kernel, calls = loop.backward_chunk, [0]

    def stopping(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 4:
            raise RuntimeError("stopped")
        return kernel(*args, **kwargs)

    with monkeypatch.context() as patch:  # stopped as a kill would stop it
        patch.setattr(Manifest, "record_stop", lambda self, exc: None)
        patch.setattr(loop, "backward_chunk", stopping)
        with pytest.raises(RuntimeError, match="stopped"):
            ds.hmm.smooth(memmap_dir=folder, **kw)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert 0 < manifest["backward_done"] < manifest["n_chunks"]
    resumed = ds.hmm.smooth(memmap_dir=folder, resume=True, **kw)
    reopened = xhmm.open_run(folder)
    names = [name for name in fresh.data_vars if name.startswith(("hpd_", "posterior_c"))]
    assert len(names) == 7
    for name in names:
        np.testing.assert_array_equal(resumed[name].values, fresh[name].values, err_msg=name)
        np.testing.assert_array_equal(reopened[name].values, fresh[name].values, err_msg=name)
        assert reopened[name].attrs == fresh[name].attrs, name
    assert json.loads((folder / "manifest.json").read_text())["result_config"]["emit_hpd"] \
        == LEVEL


def test_resume_with_another_level_says_so(model, tmp_path):
    ds, A, p0, _, _, _ = model
    kw = dict(transition=A, initial=p0, chunk_size=7, progress=False, memmap_dir=tmp_path)
    ds.hmm.smooth(emit_hpd=0.9, **kw)
    with pytest.raises(xhmm.ResumeError, match="Config.emit_hpd: 0.9 in the manifest, 0.5 now"):
        ds.hmm.smooth(emit_hpd=0.5, resume=True, **kw)


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, float("nan"), True, "0.9"])
def test_bad_level_is_an_error(level):
    with pytest.raises(xhmm.ConfigError, match=r"Config\.emit_hpd must be a level strictly "
                                                r"between 0 and 1 \(e\.g\. 0\.95\), or None; "
                                                f"got {level!r}"):
        xhmm.Config(emit_hpd=level)


def test_level_is_kept_as_a_float():
    assert xhmm.Config(emit_hpd=np.float32(0.5)).emit_hpd == 0.5
    assert type(xhmm.Config(emit_hpd=np.float32(0.5)).emit_hpd) is float
    assert xhmm.Config().hpd_level == 0.95


def test_bin_sizes_rule():
    """The median step of each axis (a gap between segments does not move it); a bin
    without a position has size 0; no position coordinate, no sizes."""
    position = np.array([0.0, 2.0, 4.0, 10.0, 12.0, 14.0, np.nan])
    ds = xr.Dataset(coords={"position": ("state_bins", position),
                            "state_ind": ("state_bins", np.arange(7))})
    found = bin_sizes(ds, np.arange(1, 7))
    np.testing.assert_array_equal(found.values, [2, 2, 2, 2, 2, 0])
    assert found.attrs == {"position": ["position"], "grid_step": [2.0]}
    assert bin_sizes(ds.drop_vars("position"), np.arange(7)) is None
    assert bin_sizes(ds.assign_coords(position=("state_bins", np.ones(7))), np.arange(7)) is None


def test_cli_flags(tmp_path, model):
    ds, A, p0, _, _, _ = model
    path = tmp_path / "ll.nc"
    ds.drop_vars("time").assign(transition=(("a", "b"), A),
                                initial=("state_bins", p0)).to_netcdf(path)
    from xhmm.cli import main

    out = tmp_path / "res.nc"
    assert main(["filter", str(path), "--out", str(out), "--emit-hpd", "0.8",
                 "--emit-consistency", "--no-persist-causal", "--no-progress"]) == 0
    saved = xhmm.open_results(out)
    assert json.loads(saved.attrs["xhmm_config"])["emit_hpd"] == 0.8
    assert {"hpd_threshold", "hpd_area", "posterior_consistency_kl"} <= set(saved.data_vars)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("non_local_detector") is None,
                    reason="non_local_detector is not installed")
def test_summaries_equal_non_local_detector_functions():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nld_summaries_check.py"),
                           "--steps", "2000"], capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert lines and not [line for line in lines if line.startswith("FAIL")], done.stdout
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_auto_precision_chunks_recomputed_in_float64_give_their_summaries():
    """compute_dtype="auto": the chunks float32 loses are run again in float64, and their
    summaries are those of the float64 rows (the other chunks' of float32 rows)."""
    jumps, A = underflow_model(K=40, T=30)
    K = A.shape[0]
    mild = -np.abs(np.arange(K)[None, :] - (20 + 5 * np.sin(np.arange(30) / 4))[:, None]) / 4
    ll = np.concatenate([mild, jumps])  # float32 keeps the first chunks, loses later ones
    ds = xr.Dataset({"log_likelihood": (("time", "state_bins"), ll)},
                    coords={"position": ("state_bins", np.arange(K) * STEP, {"units": "cm"})})
    p0 = np.full(K, 1 / K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xhmm.NumericalWarning)
        res = ds.hmm.smooth(transition=A, initial=p0, chunk_size=10, compute_dtype="auto",
                            posterior_dtype="float64", emit_hpd=LEVEL, emit_consistency=True,
                            progress=False)
    assert 0 < res.attrs["xhmm_float64_chunks"] < 6  # some chunks, not all, in float64
    check(res, reference_summaries(res.acausal_posterior.values, ll, LEVEL,
                                   np.full(K, STEP), ["s"] * K))

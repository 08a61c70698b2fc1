"""``xhmm demo`` at a tiny size: outputs written, decoding error small."""

import re

import numpy as np
import pandas as pd
import xarray as xr

from xhmm.cli import main


def test_demo_writes_outputs_and_decodes(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--duration", "6", "--window", "3",
            "--chunk-size", "1000", "--seed", "2"]
    assert main(argv) == 0
    text = capsys.readouterr().out

    assert (out / "demo.png").stat().st_size > 10_000
    assert (out / "memmap" / "acausal_posterior.dat").is_file()
    with xr.open_dataset(out / "demo_results.nc") as res:
        assert res.sizes["time"] == 3_000  # 6 s at 2 ms
        assert {"acausal_posterior", "causal_posterior", "map_position",
                "acausal_state_probabilities"} <= set(res.data_vars)
    for path in (out / "demo_results.nc", out / "demo.png", out / "memmap",
                 out / "demo_events.csv"):
        assert str(path) in text

    # the events of the reopened results, in the CSV and the line counting them
    events = pd.read_csv(out / "demo_events.csv")
    counted = re.search(r"events: (\d+) with P\(fragmented\) >= 0.8 for >= 20 ms; "
                        r"(\d+) of (\d+) simulated fragmented epochs overlap one", text)
    assert int(counted.group(1)) == len(events) > 0
    assert 0 < int(counted.group(2)) <= int(counted.group(3))
    assert (events.peak_probability >= 0.8).all() and (events.duration >= 0.02 - 1e-9).all()

    error = float(re.search(r"median \|MAP - true position\| = ([\d.]+) cm", text).group(1))
    # 40 place cells at 2 ms bins locate the animal within a few 2 cm bins
    assert np.isfinite(error) and error < 10.0
    assert re.search(r"total time: [\d.]+ s", text)

    # a second run into the same folder replaces the outputs
    assert main(argv) == 0


def test_demo_rejects_bad_flags_in_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--window", "0"]) == 2
    assert capsys.readouterr().err == "xhmm: error: --window must be positive, got 0.0\n"
    assert list(tmp_path.iterdir()) == []

"""Time the movement blocks' device products against their dense matrices.

For each block (a directional walk on a 1-D track, a random walk on a
W-shaped track graph, empirical movement on a 1-D track and on a 2-D grid,
all with K >= 2,000 interior bins), a jitted ``lax.scan`` of ``--steps``
steps of ``p <- forward(p)`` (and of ``r <- backward(r)``) with the
block's kernel (:meth:`PlannedBlock.device`, float32) against the same scan
of ``p @ dense`` (``dense @ r``), XLA's product at HIGHEST precision. Rows:
1, then 4. Each timing is the median of ``--rounds`` rounds, block and dense
alternating. Prints microseconds per step and dense / block.

    python benchmarks/movement_blocks.py [--steps 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from xhmm.transitions.directional import DirectionalRandomWalk
from xhmm.transitions.empirical import EmpiricalMovement
from xhmm.transitions.layout import StateBins
from xhmm.transitions.track_graph import TrackGraphRandomWalk

HIGHEST = jax.lax.Precision.HIGHEST


def _bins(interior: np.ndarray) -> StateBins:
    return StateBins("s", interior, np.arange(int(interior.sum())))


def _walk_1d(n_bins: int, rng: np.random.Generator) -> np.ndarray:
    """A 1-D trajectory of ``n_bins`` units, back and forth with noise."""
    steps = rng.normal(0.0, 1.5, 400_000)
    return np.abs(np.cumsum(steps) % (2 * n_bins) - n_bins)[:, None]


def _walk_2d(size: int, rng: np.random.Generator) -> np.ndarray:
    velocity, here, path = np.zeros(2), np.full(2, size / 2), np.empty((300_000, 2))
    for t in range(path.shape[0]):
        velocity = 0.7 * velocity + rng.normal(0, 0.6, 2)
        here = size - np.abs(size - np.abs(here + velocity))
        path[t] = here
    return path


def _w_track(scale: float) -> TrackGraphRandomWalk:
    edges = np.array([[0, 1], [1, 2], [2, 3], [1, 4], [4, 5]])
    lengths = np.array([2.0, 1.0, 2.0, 1.0, 2.0]) * scale
    bin_edge, bin_offset = [], []
    for e in range(5):
        n = int(lengths[e])
        bin_edge += [e] * n
        bin_offset += list(np.arange(n) + 0.5)
    return TrackGraphRandomWalk(6.0, edges, lengths, np.asarray(bin_edge),
                                np.asarray(bin_offset))


def cases() -> dict[str, tuple]:
    """Name -> (block, interior mask)."""
    rng = np.random.default_rng(0)
    n = 3000
    walk = _w_track(375.0)  # 3,000 bins
    field = _walk_2d(60, rng)
    return {
        "directional 1-D": (DirectionalRandomWalk(6.0, np.arange(n, dtype=float), "increasing"),
                            np.ones(n, bool)),
        "track graph W": (walk, np.ones(walk.bin_edge.size, bool)),
        "empirical 1-D s=1": (EmpiricalMovement(_walk_1d(n, rng), [np.arange(n + 1.0)]),
                              np.ones(n, bool)),
        "empirical 1-D s=4": (EmpiricalMovement(_walk_1d(n, rng), [np.arange(n + 1.0)], 4),
                              np.ones(n, bool)),
        "empirical 2-D s=1": (EmpiricalMovement(field, [np.arange(61.0)] * 2),
                              np.ones(3600, bool)),
    }


def _scan(step, steps: int):
    @jax.jit
    def run(operand, x):
        def body(carry, _):
            return step(operand, carry), None
        return jax.lax.scan(body, x, None, length=steps)[0]
    return run


def _time(run, operand, x, rounds_out: list) -> None:
    start = time.perf_counter()
    run(operand, x).block_until_ready()
    rounds_out.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, float32, "
          f"{args.steps} steps, median of {args.rounds} rounds (us per step)")
    for name, (block, mask) in cases().items():
        planned = block.plan(_bins(mask), _bins(mask), name)
        kernel = planned.device(np.float32, 1)
        dense = jnp.asarray(planned.dense(), jnp.float32)
        print(f"{name}: K = {int(mask.sum())}, {planned.label}")
        for direction in ("forward", "backward"):
            mine = _scan((lambda k, p: k.forward(p)) if direction == "forward"
                         else (lambda k, r: k.backward(r)), args.steps)
            ref = _scan((lambda m, p: jnp.matmul(p, m, precision=HIGHEST))
                        if direction == "forward"
                        else (lambda m, r: jnp.einsum("ij,...j->...i", m, r,
                                                      precision=HIGHEST)), args.steps)
            for rows in (1, 4):
                x = jnp.full((rows, planned.dense().shape[0]), 1 / mask.sum(), jnp.float32)
                _time(mine, kernel, x, [])
                _time(ref, dense, x, [])
                t_mine: list = []
                t_ref: list = []
                for _ in range(args.rounds):
                    _time(mine, kernel, x, t_mine)
                    _time(ref, dense, x, t_ref)
                a, b = (1e6 * np.median(t) / args.steps for t in (t_mine, t_ref))
                print(f"  {direction:8s} {rows} row(s): block {a:8.1f}  dense {b:8.1f}  "
                      f"dense / block {b / a:6.1f}x")


if __name__ == "__main__":
    main()

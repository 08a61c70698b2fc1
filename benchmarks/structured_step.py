"""Time one forward and one backward step of structured vs dense transitions.

Three comparisons, each measured in the same run, float32 on the default
JAX device, one sequence (B = 1):

``nonlocal``
    non_local_detector's NonLocal model on a 73 x 73 grid with a masked-out
    square: Local (1 bin), No-Spike (1 bin), Non-Local Continuous (random
    walk) and Non-Local Fragmented (uniform), K = 2 + 2 * interior cells,
    as :class:`xhmm.transitions.Blocks` vs a dense (K, K) operator.
``contfrag``
    A 1-D continuous (random walk) + fragmented (uniform) model at
    K = 2 * ``--track-bins``, vs dense.
``time-varying``
    The NonLocal blocks with a (T, 4, 4) discrete transition vs the same
    blocks with a static one.

A step is ``predict`` (forward: ``p @ A``) or ``pullback`` (backward:
``A @ r``), run many times in a :func:`jax.lax.scan` (as in the filter,
renormalising each step) so dispatch overhead is not counted. Each figure is
the median over ``--repeat`` runs of the time per step, after a compiling
run; the runs of the sides compared are interleaved. Prints milliseconds per
step and the ratio structured / dense (or time-varying / static).

Usage: ``python benchmarks/structured_step.py [--grid 73] [--hole 5]
[--track-bins 500] [--repeat 9]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from xhmm.kernels.operators import dense_operator
from xhmm.transitions import Blocks, Identity, RandomWalk, Uniform
from xhmm.transitions.plan import plan_transition

N_TIME = 1_000
STATES = ("Local", "No-Spike", "Non-Local Continuous", "Non-Local Fragmented")


def nonlocal_model(n_grid: int, hole: int, discrete) -> tuple[Blocks, np.ndarray, np.ndarray]:
    """Blocks, per-bin state labels and interior mask of the NonLocal model."""
    axis = np.arange(n_grid) * 2.0
    xs, ys = np.meshgrid(axis, axis, indexing="ij")
    centers = np.stack([xs.ravel(), ys.ravel()], axis=1)
    inside = np.ones((n_grid, n_grid), dtype=bool)
    lo = (n_grid - hole) // 2
    inside[lo:lo + hole, lo:lo + hole] = False
    local, no_spike, cont, frag = STATES
    blocks = {(a, b): Uniform() for a in STATES for b in STATES}
    blocks[local, local] = Identity()
    blocks[no_spike, no_spike] = Identity()
    blocks[cont, cont] = RandomWalk(6.0, centers)
    n_cells = n_grid * n_grid
    labels = np.array([local, no_spike] + [cont] * n_cells + [frag] * n_cells)
    mask = np.concatenate([[True, True], inside.ravel(), inside.ravel()])
    return Blocks(discrete, blocks), labels, mask


def contfrag_model(n_track: int) -> tuple[Blocks, np.ndarray, np.ndarray]:
    """Blocks, labels and mask of a 1-D continuous + fragmented model."""
    centers = np.arange(n_track) * 2.0
    blocks = {("cont", "cont"): RandomWalk(6.0, centers), ("cont", "frag"): Uniform(),
              ("frag", "cont"): Uniform(), ("frag", "frag"): Uniform()}
    labels = np.array(["cont"] * n_track + ["frag"] * n_track)
    return (Blocks([[0.98, 0.02], [0.02, 0.98]], blocks), labels,
            np.ones(2 * n_track, dtype=bool))


def sticky(n_states: int, stay: float) -> np.ndarray:
    """A discrete transition staying with probability ``stay``."""
    move = (1 - stay) / (n_states - 1)
    return np.full((n_states, n_states), move) + np.eye(n_states) * (stay - move)


def step_runner(operator, product: str, n_bins: int, n_steps: int, xs):
    """A compiled call running ``n_steps`` products in a scan; returns seconds per step."""

    @jax.jit
    def run(op, start, inputs):
        def step(p, x):
            q = getattr(op, product)(p, x)
            return q / jnp.sum(q), None

        return jax.lax.scan(step, start, inputs, length=n_steps)[0]

    start = jnp.full((1, n_bins), 1 / n_bins, dtype=jnp.float32)
    run(operator, start, xs).block_until_ready()

    def timed() -> float:
        tic = time.perf_counter()
        run(operator, start, xs).block_until_ready()
        return (time.perf_counter() - tic) / n_steps

    return timed


def structured_operator(model) -> tuple:
    """The plan of ``(blocks, labels, mask)`` and its float32 operator for one sequence."""
    blocks, labels, mask = model
    plan = plan_transition(blocks, state_labels=labels, is_interior=mask, n_time=N_TIME)
    return plan, plan.device(np.float32, 1)


def random_dense(n_bins: int):
    """A dense operator of random float32 values (the values do not change the time)."""
    key = jax.random.PRNGKey(0)
    matrix = jax.random.uniform(key, (n_bins, n_bins), dtype=jnp.float32) / n_bins
    return dense_operator(matrix, np.float32, 1)


def compare(title: str, runs: dict, n_bins: int, repeat: int) -> None:
    """Time ``{name: (operator, xs, steps)}`` (first = reference) and print ratios.

    ``steps`` products make one run (enough that the call's own overhead
    does not count); the runs of each repeat are interleaved so that load
    from other processes falls on all of them alike; each figure is a median.
    """
    print(f"\n{title} (K = {n_bins}, median of {repeat})")
    for product in ("predict", "pullback"):
        runners = {name: step_runner(op, product, n_bins, steps, xs)
                   for name, (op, xs, steps) in runs.items()}
        times = {name: [] for name in runs}
        for _ in range(repeat):
            for name, timed in runners.items():
                times[name].append(timed())
        (ref_name, ref), *others = ((name, statistics.median(t)) for name, t in times.items())
        line = f"  {product:8s} {ref_name} {ref * 1e3:8.4f} ms"
        for name, value in others:
            line += f" | {name} {value * 1e3:8.4f} ms, ratio {value / ref:.4f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=int, default=73)
    parser.add_argument("--hole", type=int, default=5)
    parser.add_argument("--track-bins", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}")

    plan, op = structured_operator(nonlocal_model(args.grid, args.hole, sticky(4, 0.98)))
    print(plan.describe()["blocks"])
    K = plan.n_bins
    compare("NonLocal 2-D", {"dense": (random_dense(K), None, 8), "structured": (op, None, 256)},
            K, args.repeat)

    rng = np.random.default_rng(0)
    varying = rng.dirichlet(np.ones(4), size=(N_TIME, 4)) * 0.1 + sticky(4, 0.9) * 0.9
    _, varying_op = structured_operator(nonlocal_model(args.grid, args.hole, varying))
    xs = jnp.asarray(varying[:256], dtype=jnp.float32)
    compare("NonLocal time-varying",
            {"static": (op, None, 256), "time-varying": (varying_op, xs, 256)}, K, args.repeat)

    plan, op = structured_operator(contfrag_model(args.track_bins))
    print(plan.describe()["blocks"])
    K = plan.n_bins
    compare("ContFrag 1-D",
            {"dense": (random_dense(K), None, 2_000), "structured": (op, None, 8_000)},
            K, args.repeat)

if __name__ == "__main__":
    main()

"""What every chunked run keeps besides its own buffers.

The smoother (:mod:`xhmm.engine.loop`) and the Viterbi decoder
(:mod:`xhmm.engine.viterbi`) are different recursions over the same chunks
of the same :class:`~xhmm.engine.reader.LikelihoodReader`; this module holds
what they share: the memmap folder and its manifest (opening, resuming,
CRC-checked checkpoints, completion), the device constants of each compute
dtype, progress settings, the once-only numerical warning and the way a run
is driven and its failure recorded. Both follow one precision policy,
:class:`xhmm.engine.precision.Precision`.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import jax
import numpy as np

from ..config import Config
from ..errors import LikelihoodError, NumericalWarning, ResumeError, caller_stacklevel
from .manifest import WHOLE, Manifest, crc, open_run_folder, rows_crc
from .progress import progress_bar, progress_enabled
from .reader import Chunk, LikelihoodReader, first_true
from .storage import locked_folder, sync_rows

__all__ = ["RunResult", "RunState", "DeviceConstants", "drive", "precision", "run_folder"]

Result = TypeVar("Result")

#: A float64 per-step log scale (relative to the row maximum) below this
#: means the prediction was near float64's smallest normal number where the
#: likelihood is high, so some bins may have underflowed to zero.
UNDERFLOW_LOG = -700.0


def run_folder(config: Config) -> AbstractContextManager[Path | None]:
    """The folder of a run, locked for a ``with`` block: None in RAM.

    See :func:`xhmm.engine.storage.locked_folder` (a memmap run without
    ``memmap_dir`` gets a new temporary folder).
    """
    if not config.use_memmap:
        return nullcontext(None)
    return locked_folder(config.memmap_dir, overwrite=config.overwrite, resume=config.resume)


def precision(compute_dtype: str) -> AbstractContextManager:
    """JAX 64-bit mode for a float64 computation only (thread-local).

    ``jax.enable_x64`` on recent JAX, ``jax.experimental.enable_x64`` on
    older releases (0.6.x and earlier).
    """
    if compute_dtype != "float64":
        return nullcontext()
    enable = getattr(jax, "enable_x64", None)
    if enable is None:
        from jax.experimental import enable_x64 as enable
    return enable(True)


class DeviceConstants:
    """The device constants of a run in one compute dtype: the transition
    operator, each sequence's initial distribution and the state membership
    of the bins (``(K, 0)`` when per-state results are not asked for)."""

    def __init__(self, run: "RunState", dtype: np.dtype) -> None:
        self.dtype = dtype
        B, K = run.reader.n_seq, run.reader.n_bins
        with precision(dtype.name):
            self.operator = run.transition.device(dtype, B)
            initial = np.broadcast_to(np.asarray(run.initial_values, dtype=dtype), (B, K))
            self.initial = jax.device_put(np.ascontiguousarray(initial))
            self.onehot = jax.device_put(np.asarray(run.onehot_values, dtype=dtype))


@dataclass(kw_only=True)
class RunResult:
    """What every run reports besides its outputs.

    Attributes
    ----------
    lengths : (B,) int64 ndarray
        Real rows of each sequence (given or inferred).
    memmap_dir : Path or None
        Folder of the memmap files.
    run_id : str or None
        The memmap run's id (its manifest's ``run_id``): results reading its
        files check it is still the folder's run. None in RAM.
    transition : dict
        How the transition ran (its ``describe()``).
    float64_chunks : int
        Chunks that ran in float64 (all with ``compute_dtype="float64"``;
        those recomputed with ``"auto"``).
    """

    lengths: np.ndarray
    memmap_dir: Path | None = None
    run_id: str | None = None
    transition: dict[str, Any] = field(default_factory=dict)
    float64_chunks: int = 0


class RunState:
    """The reader, transition, manifest and settings of one run.

    Parameters
    ----------
    reader : LikelihoodReader
    transition : EngineTransition
    initial : (K,) or (B, K) array
        First-step distribution over the interior bins.
    config : Config
    folder : Path or None
        The memmap run's folder, held by :func:`run_folder` for the life of
        the run; None in RAM.
    """

    def __init__(self, reader: LikelihoodReader, transition, initial, config: Config,
                 folder: Path | None) -> None:
        self.reader = reader
        self.transition = transition
        self.initial_values = initial
        self.config = config
        self.progress = progress_enabled(config.progress)
        self.warned = False
        self.memmap_dir = folder
        self.manifest: Manifest | None = None
        self.onehot_values = np.zeros((reader.n_bins, 0))
        self._devices: dict[str, DeviceConstants] = {}
        #: Row checksums of chunks written since the last commit, by output.
        self._written: dict[str, dict[str, int]] = {}

    def device(self, dtype: np.dtype) -> DeviceConstants:
        """Device constants in ``dtype`` (built on first use)."""
        if dtype.name not in self._devices:
            self._devices[dtype.name] = DeviceConstants(self, dtype)
        return self._devices[dtype.name]

    def open_folder(self, inputs: dict[str, Any]) -> str:
        """Open (or resume) the memmap folder of a run with these ``inputs``.

        Returns the buffers' open mode: ``"r+"`` when resuming a run (the
        reader's inferred lengths are restored from its manifest), else
        ``"w+"``.
        """
        self.manifest = open_run_folder(self.memmap_dir, self.config, inputs)
        if self.manifest is None:
            return "w+"
        if self.reader.infer:
            self.reader.restore_lengths(**self.manifest.data["reader"])
        self.reader.checksums = self.manifest.data.setdefault("input_crc", {})
        done = self.done("forward_done")
        if 0 < done < self.reader.n_chunks:
            # the chunk the resumed pass's checkpoint came from: read again,
            # its likelihood rows are checked against their checksum
            self.reader.read(done - 1)
        return "r+"

    def start_manifest(self, buffers: dict[str, np.ndarray], inputs: dict[str, Any],
                       metadata: dict[str, Any], state: dict[str, Any]) -> None:
        """Write the manifest of a fresh memmap run, recording its likelihood checksums."""
        self.manifest = Manifest.new(self.memmap_dir, self.config, inputs, buffers,
                                     self.reader.n_chunks, metadata,
                                     reader=self.reader.inferred_state(), state=state)
        self.reader.checksums = self.manifest.data["input_crc"]

    def check_outputs(self) -> None:
        """Check a resumed run's committed rows against their checksums (one read of them)."""
        self.manifest.check_rows(ResumeError, f"cannot resume the run in "
                                              f"{str(self.memmap_dir)!r}")

    def record_rows(self, buffers: dict[str, np.ndarray], index: int, start: int,
                    n_valid: np.ndarray) -> None:
        """Keep the checksums of chunk ``index``'s rows just written, for the next commit."""
        if self.manifest is not None:
            for name, buffer in buffers.items():
                self._written.setdefault(name, {})[str(index)] = rows_crc(buffer, start,
                                                                         n_valid)

    def record_crc(self, name: str, array: np.ndarray, key: str = WHOLE) -> None:
        """Keep the checksum of a whole output (or of its row ``key``) for the next commit."""
        if self.manifest is not None:
            self._written.setdefault(name, {})[key] = crc(array)

    def _take_written(self) -> None:
        """Move the checksums kept since the last commit into the manifest's data."""
        recorded = self.manifest.data.setdefault("row_crc", {})
        for name, crcs in self._written.items():
            recorded.setdefault(name, {}).update(crcs)
        self._written = {}

    def commit(self, **changes: Any) -> None:
        """Record progress ``changes`` and the row checksums kept since the last commit.

        Call only once the rows are flushed: the manifest vouches for them.
        """
        if self.manifest is not None:
            self._take_written()
            self.manifest.update(**changes, **self.precision.state())

    @property
    def run_id(self) -> str | None:
        """The memmap run's id (None in RAM, or a manifest from before run ids)."""
        return None if self.manifest is None else self.manifest.data.get("run_id")

    def done(self, key: str) -> int:
        """A progress counter of the manifest (0 without one)."""
        return 0 if self.manifest is None else int(self.manifest.data[key])

    def resume_point(self, kind: str) -> tuple[int, dict]:
        """Chunks of pass ``kind`` already done and its checkpoint CRCs so far."""
        crcs = {} if self.manifest is None else self.manifest.data[f"{kind}_checkpoint_crc"]
        return self.done(f"{kind}_done"), crcs

    def start_forward(self, checkpoints: np.ndarray) -> tuple[int, dict, np.ndarray | None]:
        """Where a forward pass starts.

        Returns the first chunk to run, the checkpoint CRCs so far and the
        carry before that chunk (a fresh run's checkpoint 0 is written as
        zeros); the carry is None when the pass is already complete.
        """
        first, crcs = self.resume_point("forward")
        if first >= self.reader.n_chunks:
            return first, crcs, None
        if first == 0:
            checkpoints[0] = 0.0
        return first, crcs, self.verified_checkpoint(checkpoints, first, "forward")

    def start_backward(self) -> tuple[int, int, dict]:
        """Where a backward pass starts, in reverse chunk order.

        Returns the number of chunks holding real rows, how many of them
        the pass has already done (the next is ``n_chunks - 1 - done``;
        negative when complete) and its checkpoint CRCs so far.
        """
        done, crcs = self.resume_point("backward")
        return int(self.reader.last_chunk().max()) + 1, done, crcs

    def roll_back_forward(self, start: int, crcs: dict) -> None:
        """Record the forward pass as done up to chunk ``start`` only, before recomputing.

        The float64 recomputation of chunks ``start`` onwards rewrites
        checkpoints the manifest vouches for; with this recorded first, a
        run stopped at any instant of it resumes from checkpoint ``start``,
        which it does not rewrite, and recomputes the same chunks again.
        """
        for key in [key for key in crcs if int(key) > start]:
            del crcs[key]
        if self.manifest is not None:
            for rows in self.manifest.data.get("row_crc", {}).values():
                for key in [key for key in rows if key != WHOLE and int(key) >= start]:
                    del rows[key]
            self.manifest.update(forward_done=start, forward_checkpoint_crc=crcs)

    def verified_checkpoint(self, buffer: np.ndarray, index: int, kind: str) -> np.ndarray:
        """Row ``index`` of a checkpoint buffer, checked against its stored CRC."""
        row = np.array(buffer[index])
        stored = (None if self.manifest is None
                  else self.manifest.data[f"{kind}_checkpoint_crc"].get(str(index)))
        if stored is not None and stored != crc(row):
            raise ResumeError(
                f"{kind} checkpoint {index} in {str(self.memmap_dir)!r} is corrupt "
                "(CRC mismatch); start the run again with overwrite=True"
            )
        return row

    def store_checkpoint(self, buffer: np.ndarray, index: int, carry, crcs: dict) -> None:
        """Keep ``carry`` as checkpoint ``index`` (flushed), its CRC in ``crcs``."""
        buffer[index] = np.asarray(carry)
        crcs[str(index)] = crc(buffer[index])
        sync_rows(buffer, index, index + 1)

    @contextmanager
    def pass_bar(self, kind: str, total: int, done: int) -> Iterator[Any]:
        """The progress bar of pass ``kind`` over ``total`` rows, ``done`` already."""
        n = self.reader.n_seq
        label = f"xhmm {kind}" + (f" ({n} sequences)" if self.reader.sequence_ids is not None
                                  else "")
        with progress_bar(self.progress, total, label) as bar:
            bar.update(done)
            yield bar

    def checked_log_scales(self, chunk: Chunk, log_scale: np.ndarray, dtype: np.dtype,
                           impossible: str, near_underflow: str) -> np.ndarray:
        """A chunk's per-row log scales with the likelihood shifts added back.

        Raises ``LikelihoodError(impossible.format(where=...))`` at the first
        real row whose scale is not finite, and warns once per run
        (``near_underflow.format(where=..., log=...)``) where a float64
        row's scale is below :data:`UNDERFLOW_LOG`.
        """
        n_rows = chunk.stop - chunk.start
        values, valid = chunk.unshifted(log_scale), chunk.valid
        where = self.reader.first_where(chunk, valid & ~np.isfinite(values))
        if where is not None:
            raise LikelihoodError(impossible.format(where=where))
        found = first_true(valid & (log_scale[:, :n_rows] < UNDERFLOW_LOG))
        if dtype == np.float64 and found is not None and not self.warned:
            self.warned = True
            b, row = found
            warnings.warn(
                near_underflow.format(where=self.reader.where(b, chunk.start + row),
                                      log=float(log_scale[b, row])),
                NumericalWarning, stacklevel=caller_stacklevel(),
            )
        return values

    def complete(self, buffer: np.ndarray) -> None:
        """Flush a memmap run's last buffer and mark the run complete."""
        if self.manifest is not None:
            buffer.flush()
            self._take_written()
            self.manifest.record_complete(self.reader.inferred_state())


def drive(run: RunState, *passes: Callable[[], None], finish: Callable[[], Result]) -> Result:
    """Run ``passes`` in order, then ``finish``; a failure is recorded in the manifest."""
    try:
        for step in passes:
            step()
        return finish()
    except BaseException as exc:
        if run.manifest is not None:
            run.manifest.record_stop(exc)
        raise

"""The ``manifest.json`` of a memmap run: what it is, how far it got.

A memmap run records in ``{memmap_dir}/manifest.json`` the shapes and dtypes
of its outputs, the Config fields that shape its results, a fingerprint of
its inputs and how many forward and backward chunks are complete. The forward
carry at each completed chunk boundary lives in ``checkpoints.dat`` (and the
backward carry in ``smooth_checkpoints.dat``); the manifest holds a CRC-32 of
each, so a torn write is detected on resume. It also holds a CRC-32 of each
committed chunk's rows of every output (``row_crc``, checked by resume and
``open_run``: :meth:`Manifest.check_rows`) and of each chunk's likelihood rows
as first read (``input_crc``, compared by the reader at every later read). The manifest is rewritten
atomically (temporary file, fsync, ``os.replace``, fsync of the folder) and
only after the chunk's data have been flushed, so a run killed at any moment
resumes from its last completed chunk.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zlib
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import Config
from ..errors import IncompleteResultError, ResumeError, StorageError
from .storage import MANIFEST

__all__ = [
    "MANIFEST",
    "RESULT_FIELDS",
    "Manifest",
    "fingerprint",
    "array_digest",
    "crc",
    "rows_crc",
    "load_manifest",
    "open_run_folder",
    "result_config",
]

FORMAT_VERSION = 2
#: Config fields that change what a run writes (the rest only change how it
#: is presented or reported).
RESULT_FIELDS = (
    "chunk_size",
    "storage_dtype",
    "persist_causal",
    "emit_map",
    "emit_entropy",
    "emit_hpd",
    "emit_consistency",
    "emit_state_aggregates",
    "emit_transition_counts",
    "emit_step_transition_counts",
    "compute_dtype",
)
_SAMPLE_ROWS = 64
#: Outputs with one row per chunk (the rest: one row per time step, or whole).
PER_CHUNK_OUTPUTS = ("log_scale",)
#: The key of a checksum of a whole output file (outputs not written by chunk).
WHOLE = "all"


def array_digest(array: np.ndarray | None) -> str | None:
    """A short content hash of a (small) array: dtype, shape and bytes."""
    if array is None:
        return None
    array = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def crc(array: np.ndarray) -> int:
    """CRC-32 of an array's bytes (checkpoint integrity)."""
    return zlib.crc32(np.ascontiguousarray(array).tobytes())


def rows_crc(buffer: np.ndarray, start: int, n_valid: np.ndarray) -> int:
    """CRC-32 of rows ``start:start + n_valid[b]`` of each sequence ``b`` of a (B, T, ...) buffer.

    The bytes are those of the file a memmap buffer writes, in file order
    (see :meth:`Manifest.check_rows`).
    """
    value = 0
    for b, n in enumerate(n_valid):
        value = zlib.crc32(np.ascontiguousarray(buffer[b, start:start + int(n)]), value)
    return value


def _sample_rows(n_time: int, read_rows: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """Three blocks of rows (start, middle, end) of a (B, T, N) input."""
    starts = sorted({0, max(0, n_time // 2 - _SAMPLE_ROWS // 2), max(0, n_time - _SAMPLE_ROWS)})
    return np.concatenate([read_rows(start, min(start + _SAMPLE_ROWS, n_time))
                           for start in starts], axis=1)


def fingerprint(log_likelihood, transition_digest: str, initial, columns, state_onehot,
                *, smooth: bool, store_acausal: bool, read_rows: Callable[[int, int], np.ndarray],
                lengths=None) -> dict[str, Any]:
    """Identify the inputs of a run cheaply.

    Shapes and dtypes, hashes of the transition (its ``digest()``), initial,
    interior bins, state membership and given lengths, and a hash of three
    sampled blocks of log-likelihood rows (start, middle, end), read by
    ``read_rows(start, stop)`` (the run's reader, so that the dask blocks
    sampled are computed once for the sample and the run).
    """
    return {
        "log_likelihood_shape": [int(s) for s in log_likelihood.shape],
        "log_likelihood_dtype": str(np.dtype(log_likelihood.dtype)),
        "log_likelihood_sample": array_digest(_sample_rows(int(log_likelihood.shape[1]),
                                                           read_rows)),
        "transition": transition_digest,
        "initial": array_digest(np.asarray(initial, dtype=np.float64)),
        "interior_bins": array_digest(None if columns is None else np.asarray(columns, np.int64)),
        "state_membership": array_digest(state_onehot),
        "lengths": array_digest(None if lengths is None else np.asarray(lengths, np.int64)),
        "smooth": bool(smooth),
        "store_acausal": bool(store_acausal),
    }


def result_config(config: Config) -> dict[str, Any]:
    """The Config values that shape a run's stored results."""
    return {name: getattr(config, name) for name in RESULT_FIELDS}


class Manifest:
    """Read and atomically rewrite ``manifest.json`` of one memmap run.

    Parameters
    ----------
    folder : Path
    data : dict
        The manifest content.
    """

    def __init__(self, folder: Path, data: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.data = data

    @property
    def path(self) -> Path:
        """Location of ``manifest.json``."""
        return self.folder / MANIFEST

    @classmethod
    def new(cls, folder: Path, config: Config, inputs: dict[str, Any],
            outputs: dict[str, np.ndarray], n_chunks: int,
            metadata: dict[str, Any] | None = None,
            reader: dict[str, Any] | None = None,
            state: dict[str, Any] | None = None) -> "Manifest":
        """Start the manifest of a fresh run (status ``running``).

        ``metadata`` is stored as given (JSON-serialisable), for the layer
        above to reopen the run (e.g. bin layout and state labels);
        ``reader`` is the likelihood reader's inferred lengths so far;
        ``state`` holds the run's own progress fields (written with the rest,
        in the one first write).
        """
        manifest = cls(folder, {
            "format_version": FORMAT_VERSION,
            "run_id": uuid.uuid4().hex,
            "status": "running",
            "error": None,
            "n_chunks": int(n_chunks),
            "forward_done": 0,
            "backward_done": 0,
            "forward_checkpoint_crc": {},
            "backward_checkpoint_crc": {},
            "row_crc": {},
            "input_crc": {},
            "result_config": result_config(config),
            "config": config.to_dict(),
            "inputs": inputs,
            "metadata": metadata or {},
            "reader": reader or {},
            "outputs": {
                name: {"file": f"{name}.dat", "shape": list(buf.shape),
                       "dtype": str(buf.dtype)}
                for name, buf in outputs.items()
            },
            **(state or {}),
        })
        manifest.write()
        return manifest

    def check_matches(self, config: Config, inputs: dict[str, Any]) -> None:
        """Raise ResumeError naming every difference from the requested run.

        A folder holding another kind of run (filter, smooth or
        most_likely_sequence) is said plainly first.
        """
        held, asked = _run_kind(self.data.get("inputs", {})), _run_kind(inputs)
        if held != asked:
            raise ResumeError(
                f"cannot resume the run in {str(self.folder)!r}: it holds a {held} run, and "
                f"a {asked} run was asked for; resume it with {held}, or start the {asked} "
                "run in another folder (or with overwrite=True, which replaces it)"
            )
        diffs = []
        stored = self.data.get("result_config", {})
        defaults = result_config(Config())  # of fields a folder's xhmm did not have
        for name, value in result_config(config).items():
            held = stored.get(name, defaults[name])
            if held != value:
                diffs.append(f"Config.{name}: {held!r} in the manifest, {value!r} now")
        stored_inputs = self.data.get("inputs", {})
        for name, value in inputs.items():
            if stored_inputs.get(name) != value:
                diffs.append(f"input {name} differs ({stored_inputs.get(name)!r} in the "
                             f"manifest, {value!r} now)")
        if diffs:
            raise ResumeError(
                f"cannot resume the run in {str(self.folder)!r}: it was started with "
                "different settings or inputs:\n  " + "\n  ".join(diffs)
            )

    def check_rows(self, error: type[StorageError], action: str) -> None:
        """Read the rows the manifest holds checksums of and compare (one read of them).

        ``row_crc`` holds, for each output, the CRC-32 of each committed
        chunk's rows as written (:func:`rows_crc`: the real rows of every
        sequence), of a per-chunk output's row (:data:`PER_CHUNK_OUTPUTS`) or
        of the whole file (key :data:`WHOLE`). The files are read with plain
        reads, not mapped.

        Raises
        ------
        error
            ``ResumeError`` (resuming) or ``StorageError`` (reading results),
            ``"{action}: '{file}' is damaged or was changed: chunk ..."``,
            naming the file, the chunk and its time rows.
        """
        size = int(self.data["result_config"]["chunk_size"])
        lengths = np.asarray(self.data["reader"]["lengths"], dtype=np.int64)
        for name, crcs in self.data.get("row_crc", {}).items():
            info = self.data["outputs"][name]
            shape, dtype = tuple(info["shape"]), np.dtype(info["dtype"])
            path = self.folder / info["file"]
            row_bytes = int(np.prod(shape[2:], dtype=np.int64)) * dtype.itemsize
            with open(path, "rb") as fh:
                for key, stored in crcs.items():
                    if key == WHOLE:
                        spans, where = [(0, int(np.prod(shape)) * dtype.itemsize)], "the file"
                    elif name in PER_CHUNK_OUTPUTS:
                        width = int(np.prod(shape[1:])) * dtype.itemsize
                        spans, where = [(int(key) * width, width)], f"chunk {key}"
                    else:
                        start = int(key) * size
                        n_valid = np.clip(lengths - start, 0, size)
                        spans = [((b * shape[1] + start) * row_bytes, int(n) * row_bytes)
                                 for b, n in enumerate(n_valid)]
                        stop = start + int(n_valid.max()) - 1
                        where = f"chunk {key} (time rows {start}-{stop})"
                    value = 0
                    for offset, length in spans:
                        fh.seek(offset)
                        value = zlib.crc32(fh.read(length), value)
                    if value != stored:
                        raise error(
                            f"{action}: {str(path)!r} is damaged or was changed: {where} "
                            "does not match the CRC-32 recorded when it was written"
                        )

    def update(self, **changes: Any) -> None:
        """Change fields and rewrite the file atomically."""
        self.data.update(changes)
        self.write()

    def write(self) -> None:
        """Write to a temporary file, fsync, ``os.replace``, fsync the folder.

        The temporary name (``.manifest.json.<pid>.<id>.tmp``) is unique to
        the write, and removed if the write fails.
        """
        tmp = self.folder / f".{MANIFEST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        text = json.dumps(self.data, indent=1, sort_keys=True)
        try:
            with open(tmp, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise StorageError(
                f"cannot write the run manifest {str(self.path)!r} "
                f"({len(text):,} bytes): {exc.strerror or exc}"
            ) from exc

    def record_complete(self, reader: dict[str, Any]) -> None:
        """Record that the run finished (``reader``: its final inferred lengths)."""
        self.update(status="complete", error=None, reader=reader)

    def record_stop(self, exc: BaseException) -> None:
        """Record that the run stopped with ``exc`` (``interrupted`` or ``failed``).

        A failure to write the manifest is swallowed, so that ``exc`` stays
        the error the caller sees.
        """
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        with suppress(StorageError):
            self.update(status=status, error=f"{type(exc).__name__}: {exc}")

    def require_complete(self) -> None:
        """Raise IncompleteResultError unless the run finished."""
        status = self.data.get("status")
        if status != "complete":
            n = self.data.get("n_chunks")
            raise IncompleteResultError(
                f"the run in {str(self.folder)!r} is not complete (status {status!r}; "
                f"forward {self.data.get('forward_done')}/{n} chunks, backward "
                f"{self.data.get('backward_done')}/{n}); rerun with resume=True"
                + (f"; it failed with: {self.data['error']}" if self.data.get("error") else "")
            )


def _run_kind(inputs: dict[str, Any]) -> str:
    """The method a run's :func:`fingerprint` is of."""
    if inputs.get("algorithm") == "viterbi":
        return "most_likely_sequence"
    if inputs.get("algorithm") == "sample_paths":
        return "sample_paths"
    return "smooth" if inputs.get("smooth") else "filter"


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_dtype(value: Any) -> bool:
    try:
        return isinstance(value, str) and np.dtype(value).kind in "biuf"
    except TypeError:
        return False


def _crc_table(value: Any, keys: Callable[[str], bool] = str.isdigit) -> bool:
    return isinstance(value, dict) and all(keys(k) and _is_int(v) for k, v in value.items())


def _check_fields(data: Any, path: Path) -> None:
    """Raise ResumeError naming the first field of a manifest that is not what xhmm wrote."""
    if not isinstance(data, dict):
        raise ResumeError(f"{str(path)!r} is damaged: it is not a JSON object; start the run "
                          "again with overwrite=True")
    n = data.get("n_chunks")
    n = n if _is_int(n, 1) else None
    reader, outputs = data.get("reader"), data.get("outputs")
    chunk_key = lambda key: key == WHOLE or key.isdigit()  # noqa: E731
    checks: list[tuple[str, Any, Callable[[Any], bool], str]] = [
        ("status", data.get("status"),
         lambda v: v in ("running", "complete", "interrupted", "failed"),
         "one of 'running', 'complete', 'interrupted', 'failed'"),
        ("run_id", data.get("run_id"), lambda v: isinstance(v, str), "a string"),
        ("n_chunks", data.get("n_chunks"), lambda v: _is_int(v, 1), "a positive integer"),
        ("forward_done", data.get("forward_done"),
         lambda v: _is_int(v) and n is not None and v <= n, "an integer from 0 to n_chunks"),
        ("backward_done", data.get("backward_done"),
         lambda v: _is_int(v) and n is not None and v <= n, "an integer from 0 to n_chunks"),
        ("forward_checkpoint_crc", data.get("forward_checkpoint_crc"), _crc_table,
         "chunk numbers mapped to CRC-32 values"),
        ("backward_checkpoint_crc", data.get("backward_checkpoint_crc"), _crc_table,
         "chunk numbers mapped to CRC-32 values"),
        ("input_crc", data.get("input_crc", {}), _crc_table,
         "chunk numbers mapped to CRC-32 values"),
        ("chunk_float64", data.get("chunk_float64"),
         lambda v: isinstance(v, list) and len(v) == n and all(isinstance(x, bool) for x in v),
         "a list of n_chunks booleans"),
        ("chunk_tiny", data.get("chunk_tiny"),
         lambda v: isinstance(v, list) and len(v) == n and all(isinstance(x, bool) for x in v),
         "a list of n_chunks booleans"),
        ("result_config", data.get("result_config"),
         lambda v: isinstance(v, dict) and _is_int(v.get("chunk_size"), 1),
         "an object with a positive chunk_size"),
    ]
    checks += [(name, data.get(name), lambda v: isinstance(v, dict), "an object")
               for name in ("config", "inputs", "metadata")]
    checks += [
        ("reader", reader, lambda v: isinstance(v, dict)
         and isinstance(v.get("lengths"), list) and all(_is_int(x) for x in v["lengths"])
         and isinstance(v.get("ended"), list) and len(v["ended"]) == len(v["lengths"])
         and all(isinstance(x, bool) for x in v["ended"]) and _is_int(v.get("scanned")),
         "an object of lengths, ended and scanned"),
        ("outputs", outputs, lambda v: isinstance(v, dict) and all(
            isinstance(o, dict) and o.get("file") == f"{name}.dat"
            and isinstance(o.get("shape"), list) and all(_is_int(x) for x in o["shape"])
            and _is_dtype(o.get("dtype")) for name, o in v.items()),
         "output names mapped to their file, shape and dtype"),
        ("row_crc", data.get("row_crc", {}),
         lambda v: isinstance(v, dict) and isinstance(outputs, dict) and all(
             name in outputs and _crc_table(t, chunk_key) for name, t in v.items()),
         "output names mapped to tables of CRC-32 values"),
    ]
    for name, value, valid, expected in checks:
        if not valid(value):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ResumeError(
                f"{str(path)!r} is damaged: field {name!r} is {shown}, expected {expected}; "
                "start the run again with overwrite=True"
            )


def load_manifest(folder: str | os.PathLike) -> Manifest:
    """Read ``{folder}/manifest.json``.

    Raises
    ------
    ResumeError
        If there is no readable manifest.
    """
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResumeError(
            f"no run to resume in {str(folder)!r}: {MANIFEST} is missing"
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or UTF-8
        raise ResumeError(f"cannot read {str(path)!r}: {exc}") from exc
    if isinstance(data, dict) and data.get("format_version") != FORMAT_VERSION:
        raise ResumeError(
            f"{str(path)!r} has format_version {data.get('format_version')!r}; "
            f"this xhmm writes {FORMAT_VERSION}"
        )
    _check_fields(data, path)
    return Manifest(Path(folder), data)


def open_run_folder(folder: Path, config: Config,
                    inputs: dict[str, Any]) -> Manifest | None:
    """The manifest of the run a memmap run resumes in ``folder``, if any.

    Parameters
    ----------
    folder : Path
        The run folder, held by :func:`xhmm.engine.storage.locked_folder`.
    config : Config
        ``use_memmap`` runs only: ``resume=True`` continues the run in
        ``folder``; otherwise a fresh run starts there.
    inputs : dict
        The run's :func:`fingerprint`, checked against a resumed manifest.

    Returns
    -------
    Manifest or None
        The resumed run's manifest; None for a fresh run, whose folder then
        holds no earlier manifest (it must not vouch for files being
        replaced).

    Raises
    ------
    ResumeError
        No readable manifest, or one recording other settings or inputs.
    """
    if config.resume:
        manifest = load_manifest(folder)
        manifest.check_matches(config, inputs)
        return manifest
    (folder / MANIFEST).unlink(missing_ok=True)
    return None

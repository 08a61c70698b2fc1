"""Host and device memory measurements of the running process.

Host memory comes from ``/proc/self/status`` (Linux): ``RssAnon`` is the
process's private memory (heap, NumPy arrays in RAM), ``RssFile`` the pages of
mapped files it has resident (memmap outputs, shared libraries). A background
thread samples both while a measured block runs, and ``VmHWM`` (the kernel's
exact peak of their sum) is reset before it where the kernel allows.
"""

from __future__ import annotations

import resource
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["RssSampler", "combine_runs", "read_status", "ru_maxrss_bytes", "device_peak_bytes"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_FIELDS = {"RssAnon": "anon", "RssFile": "file", "VmRSS": "total", "VmHWM": "hwm"}


def read_status() -> dict[str, int]:
    """Current ``anon``, ``file``, ``total`` and ``hwm`` RSS in bytes.

    Returns an empty dict where ``/proc/self/status`` does not exist.
    """
    try:
        text = _STATUS.read_text()
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in _FIELDS:
            out[_FIELDS[key]] = int(value.split()[0]) * 1024
    return out


def _reset_hwm() -> bool:
    """Reset ``VmHWM`` to the current RSS; False where not permitted."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def ru_maxrss_bytes() -> int:
    """Peak resident set size of this process over its whole life, in bytes."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def device_peak_bytes() -> int | None:
    """Peak bytes in use on the first JAX device, or None if not reported.

    The CPU backend reports no memory statistics; GPUs do.
    """
    import jax

    stats = jax.devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return int(stats["peak_bytes_in_use"])


def combine_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One memory summary of several measured runs.

    Peaks take the largest value, ``start_*`` the smallest (so ``peak -
    start`` bounds what any run added) and ``samples`` the total; values that
    are not ints (None, "n/a") are kept from the first run that has one.
    """
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r.get(key), int)]
        if not values:
            out[key] = next((r[key] for r in runs if r.get(key) is not None), None)
        elif key == "samples":
            out[key] = sum(values)
        else:
            out[key] = (min if key.startswith("start_") else max)(values)
    return out


class RssSampler:
    """Sample anonymous and file-backed RSS in a background thread.

    Use as a context manager around the measured block; afterwards
    :attr:`result` holds the peaks (bytes) and the resident memory at the
    start, so ``peak_anon - start_anon`` is what the block added.

    Parameters
    ----------
    interval : float, default 0.005
        Seconds between samples. Peaks shorter than this can be missed by
        the sampler; ``peak_hwm`` (when available) cannot miss them.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = float(interval)
        self.result: dict[str, int | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peaks = {"anon": 0, "file": 0, "total": 0}
        self._hwm_reset = False
        self._samples = 0

    def _sample(self) -> None:
        status = read_status()
        for key in self._peaks:
            if key in status:
                self._peaks[key] = max(self._peaks[key], status[key])
        self._samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "RssSampler":
        start = read_status()
        self._hwm_reset = _reset_hwm()
        self.result = {f"start_{k}": start.get(k) for k in ("anon", "file")}
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="xhmm-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        end = read_status()
        self.result.update(
            peak_anon=self._peaks["anon"] or None,
            peak_file=self._peaks["file"] or None,
            peak_total=self._peaks["total"] or None,
            peak_hwm=end.get("hwm") if self._hwm_reset else None,
            samples=self._samples,
        )

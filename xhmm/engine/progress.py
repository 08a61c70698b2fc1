"""Progress bars for long passes (tqdm), on only where someone is watching."""

from __future__ import annotations

import sys
from contextlib import nullcontext

__all__ = ["progress_enabled", "progress_bar", "tqdm_class"]


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def progress_enabled(setting: bool | None) -> bool:
    """Resolve ``Config.progress``: None means on for a terminal or notebook."""
    if setting is not None:
        return setting
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) or _in_notebook()


def tqdm_class() -> type:
    """tqdm's notebook widget bar where ipywidgets is installed, else the text bar."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


def progress_bar(enabled: bool, total: int, desc: str, unit: str = "step"):
    """A tqdm bar (notebook or terminal) or a do-nothing stand-in."""
    if not enabled:
        return nullcontext(_Silent())
    return tqdm_class()(total=total, desc=desc, unit=unit, unit_scale=True, leave=False)


class _Silent:
    def update(self, n: int = 1) -> None:
        """Ignore progress."""

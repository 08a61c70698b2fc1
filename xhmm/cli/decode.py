"""``xhmm smooth``, ``filter``, ``viterbi`` and ``sample``: decode a likelihood file.

``viterbi`` writes the most likely path (``ds.hmm.most_likely_sequence``),
``sample`` paths drawn from the posterior (``ds.hmm.sample_paths``), the
others the posteriors.

The log-likelihood is read lazily (dask, one engine chunk of rows at a time)
from NetCDF or Zarr; the results are streamed to compressed NetCDF with
:func:`xhmm.save_results`. Every :class:`xhmm.Config` field is a flag, built
from the dataclass fields and documented from its docstring.

The transition is a dense matrix (``--transition``, or a ``transition``
variable of the likelihood file) or a structured
:class:`xhmm.transitions.Blocks` given as a JSON spec
(``--transition-spec``, or stored in the likelihood file by
:func:`xhmm.transitions.with_transition`), whose named arrays are variables
of the likelihood file (:mod:`xhmm.transitions.spec`).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import Config
from ..errors import InputError, StorageError
from ..extras import require
from ..names import SPEC_ATTR

if TYPE_CHECKING:
    import xarray as xr

    from ..transitions import Blocks

__all__ = ["add_arguments", "run", "config_field_docs", "open_input"]


def config_field_docs() -> dict[str, tuple[str, str]]:
    """Type and description of each :class:`xhmm.Config` field, from its docstring.

    Returns
    -------
    dict of str to (str, str)
        Field name to ``(type spec, description)``, e.g.
        ``"chunk_size": ('int or "auto", default "auto"', "Time steps per engine chunk. ...")``.
    """
    text = inspect.cleandoc(Config.__doc__ or "")
    _, _, section = text.partition("Parameters\n----------\n")
    docs: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in section.splitlines():
        if line and not line[0].isspace():
            name, sep, spec = line.partition(" : ")
            if not sep:
                break  # the next section starts
            current = name.strip()
            docs[current] = (spec.strip(), [])
        elif current is not None and line.strip():
            docs[current][1].append(line.strip())
    return {name: (spec, " ".join(words)) for name, (spec, words) in docs.items()}


#: A cross-reference of the docstrings (``:class:`xhmm.Config```, with ``~``:
#: only the last name shown), which help text prints as the name alone.
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`]+)`")


def plain_text(text: str) -> str:
    """Docstring text as help prints it: no reST roles, no double backquotes.

    Parameters
    ----------
    text : str

    Returns
    -------
    str
        ``:meth:`ds.hmm.fit``` reads ``ds.hmm.fit``, ``:class:`~xhmm.Config```
        reads ``Config`` and ````"auto"```` reads ``"auto"``.
    """
    text = _ROLE.sub(lambda m: m[2].rsplit(".", 1)[-1] if m[1] else m[2], text)
    return text.replace("``", "")


def _add_config_flags(parser: argparse.ArgumentParser, command: str) -> None:
    group = parser.add_argument_group(
        "run settings (xhmm.Config fields; unset flags keep the Config default)"
    )
    docs = config_field_docs()
    names = Config.field_names(_ALGORITHMS.get(command, command))
    for field in dataclasses.fields(Config):
        if field.name not in names:
            if not field.name.startswith("_"):  # another command's: named in the error
                flags = ["--" + field.name.replace("_", "-")]
                if str(field.type).startswith("bool"):
                    flags.append("--no-" + field.name.replace("_", "-"))
                parser.add_argument(*flags, nargs="?", action=_OtherCommandsFlag,
                                    help=argparse.SUPPRESS)
            continue
        spec, description = docs.get(field.name, ("", ""))
        flag = "--" + field.name.replace("_", "-")
        help_text = plain_text(f"{description} [{spec}]").replace("%", "%%")
        options = {"dest": f"config_{field.name}", "default": argparse.SUPPRESS,
                   "help": help_text}
        kind = str(field.type)
        if kind.startswith("bool"):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        elif kind == "int":
            group.add_argument(flag, type=int, metavar="N", **options)
        elif kind == "int | str":  # chunk_size: N or auto
            group.add_argument(flag, type=_int_or_auto, metavar="N|auto", **options)
        elif kind == "float | None":  # emit_hpd: a level
            group.add_argument(flag, type=float, metavar="LEVEL", **options)
        else:  # memmap_dir: DIR, the dtypes: DTYPE
            group.add_argument(flag, metavar=field.name.rsplit("_", 1)[-1].upper(), **options)


class _OtherCommandsFlag(argparse.Action):
    """A Config flag of another command: a usage error saying which commands take it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        field = self.option_strings[0][2:].replace("-", "_")
        takers = [name for name in ("smooth", "filter")
                  if field in Config.field_names(name)]
        parser.error(f"{option_string} is an option of xhmm {' and xhmm '.join(takers)}, "
                     f"not of xhmm {parser.get_default('command')}")


def _int_or_auto(text: str) -> int | str:
    """An int flag value, or ``"auto"``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or auto, got {text!r}") from None


#: The algorithm (:meth:`xhmm.Config.field_names`) of a command named otherwise.
_ALGORITHMS = {"sample": "sample_paths"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``xhmm smooth``, ``xhmm filter``, ``xhmm viterbi`` or ``xhmm sample``.

    The command is ``parser.get_default("command")``; it gets the flags of
    the Config fields that concern its output (:meth:`xhmm.Config.field_names`).
    """
    command = parser.get_default("command")
    parser.add_argument(
        "likelihood", type=Path, metavar="LIKELIHOOD",
        help="NetCDF file or Zarr store with 'log_likelihood' (time x state_bins) and, "
        "optionally, coordinates is_interior / state and variables transition / initial",
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--transition", type=Path, metavar="FILE",
        help="transition matrix (rows = from): .npy, or NetCDF/Zarr with a "
        "'transition' variable; default: the 'transition' variable of LIKELIHOOD, "
        f"else the structured transition stored in its {SPEC_ATTR!r} attribute",
    )
    model.add_argument(
        "--transition-spec", type=Path, metavar="SPEC.json",
        help="structured transition (xhmm.transitions.Blocks) as a JSON spec; the "
        "arrays it names are variables of LIKELIHOOD (see docs/cli.md)",
    )
    parser.add_argument(
        "--initial", type=Path, metavar="FILE",
        help="initial distribution: .npy, or NetCDF/Zarr with an 'initial' variable; "
        "default: the 'initial' variable of LIKELIHOOD",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="RESULTS.nc",
                        help="results file to write: compressed NetCDF, or a Zarr store "
                        "when the name ends in .zarr")
    parser.add_argument("--force", action="store_true",
                        help="replace RESULTS.nc if it exists")
    parser.add_argument("--complevel", type=int, default=4, metavar="0-9",
                        help="compression level of the results file (default: 4)")
    if command == "sample":
        parser.add_argument("--n-samples", type=int, required=True, metavar="N",
                            help="paths to draw from the posterior")
        parser.add_argument("--seed", type=int, required=True, metavar="SEED",
                            help="seed of the draws (0 to 2**63 - 1): the same seed draws "
                            "the same paths")
    _add_config_flags(parser, command)


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or path.is_dir()


def open_input(path: Path, chunk_size: int | str | None = None) -> xr.Dataset:
    """Open a NetCDF file or Zarr store lazily.

    Parameters
    ----------
    path : Path
    chunk_size : int or "auto", optional
        Rows per dask block along ``time``: each block reads only its rows
        from disk, whatever the file's own chunking. ``"auto"`` is the
        engine's size for a NumPy input
        (:func:`xhmm.engine.chunking.fallback_chunk_size` of the
        ``state_bins``), which ``chunk_size="auto"`` then takes from the
        blocks.

    Returns
    -------
    xr.Dataset

    Raises
    ------
    xhmm.InputError
        If the path does not exist or is not a readable NetCDF/Zarr.
    xhmm.MissingExtraError
        If it is a Zarr store while the ``zarr`` package is missing.
    """
    import xarray as xr

    from ..engine.chunking import fallback_chunk_size

    if not path.exists():
        raise InputError(f"no such file or directory: {str(path)!r}")
    if _is_zarr(path):
        require("zarr", "zarr", f"reading {str(path)!r} (a Zarr store)")
        engine = "zarr"
    else:
        engine = None
    try:
        ds = xr.open_dataset(path, engine=engine, chunks=None)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read {str(path)!r} as NetCDF or Zarr: {first}") from exc
    if chunk_size is not None and "time" in ds.dims:
        if chunk_size == "auto":
            chunk_size = fallback_chunk_size(ds.sizes.get("state_bins", 1))
        ds = ds.chunk({"time": chunk_size})
    return ds


def _load_array(path: Path, name: str) -> np.ndarray:
    """``name`` from a .npy file, or the variable ``name`` of a NetCDF/Zarr file."""
    if path.suffix == ".npy":
        if not path.is_file():
            raise InputError(f"no such file: {str(path)!r} (--{name})")
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {str(path)!r} (--{name}) as .npy: {exc}") from exc
    ds = open_input(path)
    if name in ds.data_vars:
        return ds[name].values
    found = ", ".join(map(str, ds.data_vars)) or "no data variables"
    raise InputError(f"{str(path)!r} (--{name}) has no variable {name!r}; found: {found}")


def _model_array(ds: xr.Dataset, path: Path | None, name: str, source: Path):
    if path is not None:
        return _load_array(path, name)
    if name in ds.data_vars:
        return ds[name].values
    raise InputError(
        f"no {name} given: pass --{name} FILE (.npy, NetCDF or Zarr) or store a "
        f"variable {name!r} in {str(source)!r}"
    )


def _transition(ds: xr.Dataset, args: argparse.Namespace) -> np.ndarray | Blocks:
    """The transition: a spec file, a matrix file, or what LIKELIHOOD holds."""
    from ..transitions import from_spec, stored_transition

    path = args.transition_spec
    if path is not None:
        try:
            spec = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"no such file: {str(path)!r} (--transition-spec)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(
                f"cannot read {str(path)!r} (--transition-spec) as JSON: {exc}") from exc
        return from_spec(spec, ds)
    if args.transition is None and "transition" not in ds.data_vars:
        stored = stored_transition(ds)
        if stored is None:
            raise InputError(
                "no transition given: pass --transition FILE (.npy, NetCDF or Zarr) or "
                "--transition-spec SPEC.json, or store a variable 'transition' (or a "
                f"structured transition, xhmm.transitions.with_transition) in "
                f"{str(args.likelihood)!r}"
            )
        return stored
    return _model_array(ds, args.transition, "transition", args.likelihood)


def _config_overrides(args: argparse.Namespace) -> dict:
    prefix = "config_"
    return {key[len(prefix):]: value for key, value in vars(args).items()
            if key.startswith(prefix)}


def run(args: argparse.Namespace) -> int:
    """Decode LIKELIHOOD with the chosen command and save the results.

    Returns
    -------
    int
        0 on success.
    """
    from ..io.store import check_replaceable, save_results
    from .info import disk_bytes

    out: Path = args.out
    if out.exists() and not args.force:
        raise StorageError(f"{str(out)!r} exists; pass --force to replace it")
    check_replaceable(out)
    if not out.parent.is_dir():
        raise StorageError(f"folder {str(out.parent)!r} of --out does not exist")
    config = Config.resolve(None, _config_overrides(args))
    ds = open_input(args.likelihood, config.chunk_size)
    transition = _transition(ds, args)
    initial = _model_array(ds, args.initial, "initial", args.likelihood)

    start = time.perf_counter()
    method = {"smooth": ds.hmm.smooth, "filter": ds.hmm.filter,
              "viterbi": ds.hmm.most_likely_sequence, "sample": ds.hmm.sample_paths
              }[args.command]
    sampling = ({"n_samples": args.n_samples, "seed": args.seed}
                if args.command == "sample" else {})
    results = method(transition=transition, initial=initial, config=config, **sampling)
    decoded = time.perf_counter() - start
    save_results(results, out, complevel=args.complevel, overwrite=args.force,
                 progress=config.progress)
    saved = time.perf_counter() - start - decoded

    n_time, n_bins = ds.sizes["time"], ds.sizes["state_bins"]
    size = disk_bytes(out) / 1e6
    print(f"xhmm {args.command}: {n_time:,} time steps x {n_bins:,} state bins "
          f"in {decoded:.1f} s; saved {out} ({size:,.1f} MB) in {saved:.1f} s")
    if args.command == "viterbi":
        print(f"path log-probability: {float(results.path_log_probability):,.3f}")
    elif args.command == "sample":
        print(f"{args.n_samples:,} paths, seed {args.seed}; marginal log-likelihood: "
              f"{float(results.marginal_log_likelihood):,.3f}")
    else:
        print(f"marginal log-likelihood: {float(results.marginal_log_likelihood):,.3f}")
    if "xhmm_memmap_dir" in results.attrs:
        print(f"memmap outputs: {results.attrs['xhmm_memmap_dir']}")
    return 0

"""The single configuration object of xhmm."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = ["Config", "POSTERIOR_DTYPES", "COMPUTE_DTYPES", "OUT_DTYPES", "POSTERIOR_FIELDS",
           "SMOOTHER_FIELDS", "DEFAULT_HPD_LEVEL"]

POSTERIOR_DTYPES = ("float32", "float16", "uint16", "float64")
COMPUTE_DTYPES = ("auto", "float32", "float64")
OUT_DTYPES = ("float32", "float64")
#: Fields that concern posteriors only: ``most_likely_sequence`` (the Viterbi
#: path) ignores them.
POSTERIOR_FIELDS = ("posterior_dtype", "quantize_posteriors", "lazy_expand", "time_chunks",
                    "posterior_out_dtype", "persist_causal", "emit_map", "emit_entropy",
                    "emit_hpd", "emit_consistency", "emit_transition_counts",
                    "emit_step_transition_counts", "emit_state_aggregates")
#: Fields of a smoother run only: ``filter`` rejects them.
SMOOTHER_FIELDS = ("emit_transition_counts", "emit_step_transition_counts")
#: The HPD level of ``emit_consistency`` when ``emit_hpd`` is not given.
DEFAULT_HPD_LEVEL = 0.95


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Config:
    """Settings of one filter/smoother run.

    Every field can also be passed as a keyword to ``ds.hmm.smooth``,
    ``ds.hmm.filter``, ``ds.hmm.map_estimate`` and
    ``ds.hmm.most_likely_sequence`` (which uses the fields that do not
    concern posteriors, with its own ``compute_dtype`` rule). Values are
    validated on construction; a bad value raises :class:`xhmm.ConfigError`
    naming the field.

    Parameters
    ----------
    chunk_size : int or "auto", default "auto"
        Time steps per engine chunk. Device memory and host working memory
        scale with ``chunk_size * n_interior_bins``. Every chunk has this
        shape (the last one is padded), so each kernel compiles once.
        ``"auto"`` takes the time blocks of a dask likelihood when they are
        regular, at least 64 rows and ``rows * n_interior_bins * 4`` bytes
        fit in 256 MiB; otherwise 5000 rows, fewer where one chunk would
        exceed 256 MiB (:func:`xhmm.engine.chunking.resolve_chunk_size`).
        Whatever the chunk size, each dask block (of at most 1 GiB) is
        computed at most once per pass.
    use_memmap : bool, optional
        Store the full posteriors as ``np.memmap`` files instead of RAM. None
        (default) means True when ``memmap_dir`` is given and False otherwise;
        ``use_memmap=False`` with a ``memmap_dir`` is an error. The built
        Config always holds True or False.
    memmap_dir : str or Path, optional
        Folder for the memmap files (``{memmap_dir}/{name}.dat``); giving it
        turns ``use_memmap`` on. Created if missing. With ``use_memmap=True``
        and no ``memmap_dir`` a new temporary folder is made and its path
        recorded in the result attributes.
    posterior_dtype : {"float32", "float16", "uint16", "float64"}, default "float32"
        Storage dtype of the posteriors; the cast happens only on write.
        ``uint16`` stores ``round(p * 65534)`` (65535 marks NaN): absolute
        error at most ``0.5 / 65534``. ``float64`` keeps what
        ``compute_dtype="float64"`` computes (and presents float64 posteriors).
    quantize_posteriors : bool, default False
        Shorthand for ``posterior_dtype="uint16"``.
    lazy_expand : bool, default True
        Return dask-backed posteriors expanded to all ``state_bins`` block by
        block. False returns NumPy-backed posteriors with the same values.
    time_chunks : int or "auto", default "auto"
        Rows per block of the lazy result arrays. ``"auto"`` sizes blocks by
        bytes: as many rows as fit one block of ``time x state_bins`` values
        (in the presented dtype) in dask's ``array.chunk-size`` (128 MiB
        unless configured), whatever the number of bins
        (:func:`xhmm.frontend.lazy.block_rows`). Computing or saving a lazy
        result holds a few blocks per worker thread.
    posterior_out_dtype : {"float32", "float64"}, default "float32"
        Dtype of the posteriors as the result Dataset presents them
        (float64 whenever ``posterior_dtype="float64"``).
    persist_causal : bool, default True
        Keep the full causal (filtered) posterior. When False only the
        forward state at chunk boundaries is kept and the smoother recomputes
        each chunk's filtered rows from it; ``causal_posterior`` is omitted.
    emit_map : bool, default False
        Add ``map_state_bin`` (and ``map_<coord>`` for numeric coordinates of
        ``state_bins``), computed chunk by chunk.
    emit_entropy : bool, default False
        Add ``entropy`` (nats, over interior bins), computed chunk by chunk.
    emit_hpd : float, optional
        A level in (0, 1), e.g. 0.95: add the highest-posterior-density
        (HPD) region of each step, computed chunk by chunk: ``hpd_threshold``
        (the smallest posterior value in the region), ``hpd_size`` (its
        bins), ``hpd_area`` (its size in the units of the ``position`` or
        ``*_position`` coordinates of ``state_bins``) and, with a ``state``
        coordinate, ``hpd_state_size`` / ``hpd_state_area`` (the part of the
        region in each state). None (default): not computed.
    emit_consistency : bool, default False
        Add ``posterior_consistency_kl`` (``KL(posterior || likelihood)``,
        the likelihood normalised over the bins, nats) and
        ``posterior_consistency_hpd_overlap`` (overlap of their HPD regions,
        at ``emit_hpd`` or 0.95), computed chunk by chunk from the posterior
        and the likelihood rows.
    emit_transition_counts : bool, default False
        Add ``transition_counts`` (dims ``from_state``, ``to_state``): the
        expected number of moves between discrete states, ``sum_t
        p(state_t, state_{t+1} | all data)``, exact (bin-level pair
        posteriors summed block by block), and
        ``predictive_state_probabilities`` (``time x states``: each step's
        prediction, ``p(state_t | y_1..t-1)``). Needs a ``state``
        coordinate and a smoother run; :meth:`ds.hmm.fit` uses it.
    emit_step_transition_counts : bool, default False
        What ``emit_transition_counts`` adds, and ``step_transition_counts``
        (``time x from_state x to_state``, float64): the expected move of
        each step, ``p(state_t, state_{t+1} | all data)`` (row ``t``: the
        move from step ``t`` to ``t + 1``; 0 at each sequence's last step,
        NaN past it), whose sum over time is ``transition_counts``. Kept in
        a RAM or memmap buffer like the posteriors (``T * S * S * 8``
        bytes) and presented lazily; the covariate fit of
        :meth:`ds.hmm.fit` uses it.
    emit_state_aggregates : bool, default True
        Add ``causal_state_probabilities`` / ``acausal_state_probabilities``
        when a ``state`` coordinate labels the bins.
    progress : bool, optional
        Show progress bars. None (default) shows them when attached to a
        terminal or notebook and hides them otherwise (e.g. in CI).
    resume : bool, default False
        Continue an interrupted memmap run found in ``memmap_dir``.
    overwrite : bool, default False
        Allow a new run to replace earlier results in ``memmap_dir``.
    compute_dtype : {"auto", "float32", "float64"}, default "auto"
        Floating point type of the device computation. ``"auto"`` runs
        float32 and recomputes in float64 (JAX 64-bit mode for that
        computation only) every chunk where float32 may have lost the answer:
        a prediction below ``1e-30`` where the likelihood is within 30 nats
        of the step's normaliser, or a step float32 cannot represent at all.
        The result attribute ``xhmm_float64_chunks`` says how many chunks
        ran in float64. ``"float32"`` recomputes the same chunks to check
        itself and raises :class:`xhmm.NumericalError` where its filtered
        rows were off by more than 1e-5; ``"float64"`` runs every chunk in
        float64.
    """

    chunk_size: int | str = "auto"
    use_memmap: bool | None = None
    memmap_dir: str | os.PathLike | None = None
    posterior_dtype: str = "float32"
    quantize_posteriors: bool = False
    lazy_expand: bool = True
    time_chunks: int | str = "auto"
    posterior_out_dtype: str = "float32"
    persist_causal: bool = True
    emit_map: bool = False
    emit_entropy: bool = False
    emit_hpd: float | None = None
    emit_consistency: bool = False
    emit_transition_counts: bool = False
    emit_step_transition_counts: bool = False
    emit_state_aggregates: bool = True
    progress: bool | None = None
    resume: bool = False
    overwrite: bool = False
    compute_dtype: str = "auto"

    def __post_init__(self) -> None:
        # What the caller asked for (None: follow memmap_dir), kept so that
        # replace() re-derives use_memmap when memmap_dir changes.
        object.__setattr__(self, "_use_memmap_given", self.use_memmap)
        if self.use_memmap is None:
            object.__setattr__(self, "use_memmap", self.memmap_dir is not None)
        if self.chunk_size != "auto" and (not _is_int(self.chunk_size)
                                          or self.chunk_size <= 0):
            raise ConfigError(
                f'Config.chunk_size must be a positive int or "auto", got {self.chunk_size!r}'
            )
        if self.time_chunks != "auto" and (not _is_int(self.time_chunks)
                                           or self.time_chunks <= 0):
            raise ConfigError(
                f'Config.time_chunks must be a positive int or "auto", got {self.time_chunks!r}'
            )
        for name in (
            "use_memmap",
            "quantize_posteriors",
            "lazy_expand",
            "persist_causal",
            "emit_map",
            "emit_entropy",
            "emit_consistency",
            "emit_transition_counts",
            "emit_step_transition_counts",
            "emit_state_aggregates",
            "resume",
            "overwrite",
        ):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"Config.{name} must be True or False, got {value!r}")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise ConfigError(
                f"Config.progress must be True, False or None, got {self.progress!r}"
            )
        self._check_level()
        self._check_choice("posterior_dtype", POSTERIOR_DTYPES)
        self._check_choice("posterior_out_dtype", OUT_DTYPES)
        self._check_choice("compute_dtype", COMPUTE_DTYPES)
        if self.quantize_posteriors and self.posterior_dtype not in ("float32", "uint16"):
            raise ConfigError(
                "Config.quantize_posteriors=True means posterior_dtype='uint16', "
                f"but posterior_dtype={self.posterior_dtype!r} was also given"
            )
        if self.memmap_dir is not None:
            if not isinstance(self.memmap_dir, (str, os.PathLike)):
                raise ConfigError(
                    f"Config.memmap_dir must be a path, got {self.memmap_dir!r}"
                )
            path = Path(self.memmap_dir)
            if path.exists() and not path.is_dir():
                raise ConfigError(
                    f"Config.memmap_dir={str(path)!r} exists and is not a directory"
                )
            if not self.use_memmap:
                raise ConfigError(
                    f"Config.use_memmap=False but memmap_dir={str(path)!r} was given; "
                    "drop use_memmap=False (a memmap_dir turns memmap outputs on) or "
                    "drop memmap_dir"
                )
        if self.resume and self.memmap_dir is None:
            raise ConfigError(
                "Config.resume=True needs memmap_dir (the folder of the run to continue)"
            )

    def _check_level(self) -> None:
        """``emit_hpd``: None or a real number strictly between 0 and 1 (kept as float)."""
        value = self.emit_hpd
        if value is None:
            return
        if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number))
                or not 0 < value < 1):
            raise ConfigError(
                f"Config.emit_hpd must be a level strictly between 0 and 1 (e.g. 0.95), or "
                f"None; got {value!r}"
            )
        object.__setattr__(self, "emit_hpd", float(value))

    @property
    def hpd_level(self) -> float:
        """The HPD level of the HPD summaries and of ``emit_consistency``'s overlap.

        ``emit_hpd``, or :data:`DEFAULT_HPD_LEVEL` when it is None.
        """
        return DEFAULT_HPD_LEVEL if self.emit_hpd is None else self.emit_hpd

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        normalised = None
        if isinstance(value, str) and value in choices:
            normalised = value  # a name that is not a dtype ("auto")
        elif isinstance(value, (str, np.dtype, type)):
            try:
                normalised = np.dtype(value).name
            except (TypeError, ValueError):
                pass
        if normalised not in choices:
            raise ConfigError(
                f"Config.{name} must be one of {', '.join(choices)}; got {value!r}"
            )
        object.__setattr__(self, name, normalised)

    @property
    def attempt_dtype(self) -> str:
        """The dtype every chunk is first computed in.

        ``"float64"`` for ``compute_dtype="float64"``, else ``"float32"``
        (``"auto"`` recomputes in float64 the chunks that need it).
        """
        return "float64" if self.compute_dtype == "float64" else "float32"

    @property
    def storage_dtype(self) -> str:
        """The dtype the posteriors are stored in (after ``quantize_posteriors``)."""
        return "uint16" if self.quantize_posteriors else self.posterior_dtype

    @classmethod
    def field_names(cls, algorithm: str | None = None) -> tuple[str, ...]:
        """Names of the public fields, in declaration order.

        Parameters
        ----------
        algorithm : {"smooth", "filter", "viterbi", "sample_paths"}, optional
            Only the fields that concern this run's output: ``"viterbi"``
            (``most_likely_sequence``) and ``"sample_paths"`` leave out
            :data:`POSTERIOR_FIELDS`, ``"filter"`` :data:`SMOOTHER_FIELDS`. None: every
            field.

        Returns
        -------
        tuple of str
        """
        left_out = {"viterbi": POSTERIOR_FIELDS, "sample_paths": POSTERIOR_FIELDS,
                    "filter": SMOOTHER_FIELDS}.get(algorithm, ())
        return tuple(f.name for f in fields(cls)
                     if not f.name.startswith("_") and f.name not in left_out)

    def replace(self, **changes: Any) -> "Config":
        """Return a copy with some fields changed (validated again)."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ConfigError(
                f"unknown Config field(s) {', '.join(unknown)}; "
                f"known fields: {', '.join(self.field_names())}"
            )
        return dataclasses.replace(self, **{"use_memmap": self._use_memmap_given, **changes})

    def check_filter_output(self, has_states: bool) -> None:
        """Raise when a filter run with these settings would keep nothing.

        Parameters
        ----------
        has_states : bool
            Whether a ``state`` coordinate labels the state bins (so that
            ``emit_state_aggregates`` produces per-state probabilities).

        Raises
        ------
        xhmm.ConfigError
            With ``persist_causal=False`` and no ``emit_map``,
            ``emit_entropy``, ``emit_hpd``, ``emit_consistency`` or per-state
            probabilities requested.
        """
        if (self.persist_causal or self.emit_map or self.emit_entropy
                or self.emit_hpd is not None or self.emit_consistency
                or (has_states and self.emit_state_aggregates)):
            return
        raise ConfigError(
            "filter with persist_causal=False would keep nothing but the marginal "
            "log-likelihood: no causal_posterior and no summary (emit_map, emit_entropy, "
            "emit_hpd, emit_consistency, or emit_state_aggregates with a 'state' "
            "coordinate on state_bins); keep persist_causal=True or request a summary, "
            "e.g. emit_map=True"
        )

    def to_dict(self, algorithm: str | None = None) -> dict[str, Any]:
        """The public fields as a JSON-serialisable dict.

        With ``algorithm``, only the fields that concern its output
        (:meth:`field_names`).
        """
        out: dict[str, Any] = {}
        for name in self.field_names(algorithm):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            out[name] = value
        return out

    def to_json(self, algorithm: str | None = None) -> str:
        """The public fields (:meth:`to_dict`) as a JSON string (stored in result attributes)."""
        return json.dumps(self.to_dict(algorithm), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        """Rebuild a Config from :meth:`to_json` output."""
        return cls(**json.loads(text))

    @classmethod
    def resolve(cls, config: "Config | None", overrides: dict[str, Any]) -> "Config":
        """Combine ``config=`` with keyword overrides of its fields."""
        if config is not None and not isinstance(config, Config):
            raise ConfigError(f"config must be an xhmm.Config, got {type(config).__name__}")
        base = config if config is not None else cls()
        return base.replace(**overrides) if overrides else base

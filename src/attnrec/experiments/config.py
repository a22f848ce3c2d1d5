"""The typed form of a run: :class:`RunConfig` (a TOML run file, or the CLI's flags) and its parts.

A leaf of ``experiments/``: the run (``run.py``), its input readers (``inputs.py``) and the CTR rows
(``ctr_run.py``) all read it; it imports none of them.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from attnrec.data.schema import FeatureSchema
from attnrec.errors import ConfigError

CTRFormat = Literal["criteo", "avazu", "csv", "movielens"]
CTR_FORMATS: tuple[str, ...] = ("criteo", "avazu", "csv", "movielens")


class CTRSpec(BaseModel):
    """How a CTR run reads its rows (the ``[ctr]`` table of a run file; CLI ``--format``)."""

    model_config = ConfigDict(extra="forbid")

    #: the format of pre-split ``train``/``valid``/``test`` files (``data`` is always MovieLens as CTR)
    format: CTRFormat | None = None
    #: ``csv``: the label and fields; None = a ``label`` column and every other column categorical
    feature_schema: FeatureSchema | None = None
    #: ``csv``: the field separator
    sep: str = Field(",", min_length=1, max_length=1)
    #: MovieLens as CTR: label 1 when rating >= threshold
    threshold: float = 4.0
    #: values seen fewer times in the training rows map to the unknown index
    min_count: int = Field(1, ge=1)


class SplitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["random", "random_per_user", "temporal", "temporal_per_user", "leave_last_out"] = "random"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = Field(2026, ge=0)
    protocol: Literal["warm", "cold_start"] = "warm"

    @model_validator(mode="after")
    def _ratios(self) -> SplitSpec:
        from attnrec.data.splits import check_ratios

        try:
            check_ratios(self.ratios)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class FilterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dedup: Literal["none", "last", "first", "mean"] = "none"
    user_k: int = Field(0, ge=0)
    item_k: int = Field(0, ge=0)
    min_rating: float | None = None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # macOS, Windows
        return max(os.cpu_count() or 1, 1)


def check_threads(threads: int, *, flag: str = "--threads") -> None:
    """Refuse a CPU thread count past :func:`usable_cpus`: more threads than CPUs only slow torch down, and tens of
    thousands of them exhaust the process's thread limit, which the Rust and OpenMP runtimes answer with a native
    abort. Raises ConfigError naming ``flag``, the value and the limit."""
    cpus = usable_cpus()
    if not 1 <= threads <= cpus:
        raise ConfigError(f"{flag} {threads}: expected 1 to {cpus} (the CPUs this process may use)")


class RunConfig(BaseModel):
    """A whole run. ``data`` is a registered dataset name or a path; or give pre-split ``train``/``valid``/``test``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    data: str | None = None
    train: Path | None = None
    valid: Path | None = None
    test: Path | None = None
    split: SplitSpec = SplitSpec()
    filters: FilterSpec = FilterSpec()
    model_params: dict[str, Any] = {}
    trainer: dict[str, Any] = {}
    ks: tuple[int, ...] = (10, 20)
    out: Path | None = None
    save_model: bool = True
    #: ``out`` already holds a run: delete its checkpoints, metrics, log and bundle first (CLI ``--overwrite``)
    overwrite: bool = False
    #: continue the run in ``out`` from its checkpoint, which must match this run (CLI ``--resume``)
    resume: bool = False
    #: the data file's column names -> canonical names, e.g. ``{"userId": "user_id"}`` (CLI ``--columns``)
    columns: dict[str, str] = {}
    #: item metadata, CSV/Parquet keyed by ``item_id``: item text for models that read it (CLI ``--items``)
    items: Path | None = None
    #: item-feature modalities for models that take ``item_features`` (CLI ``--modalities``): ``text``, ``meta``
    #: (built from the item metadata) and ``NAME=FILE.npy``; empty: text and meta where the metadata has them
    modalities: list[str] = []
    #: how CTR rows are read: the files' format, a CSV schema, MovieLens' label threshold (``[ctr]``)
    ctr: CTRSpec = CTRSpec()
    #: torch CPU threads during the run (CLI ``--threads``); None keeps torch's setting
    threads: int | None = Field(None, ge=1)
    #: the ratings' scale ``[low, high]`` (CLI ``--rating-range 1,5``): a rating outside it in any input is an error
    #: (or, with ``on_bad_lines = "skip"``, dropped and counted) and predictions are clipped to it; None: inferred
    #: from the training split, said on the console and recorded (metrics.json, the bundle)
    rating_range: tuple[float, float] | None = None
    #: a malformed line or an out-of-range rating: ``error`` stops at the first, ``skip`` drops and counts them
    on_bad_lines: Literal["error", "skip"] = "error"

    @model_validator(mode="after")
    def _one_source(self) -> RunConfig:
        if (self.data is None) == (self.train is None):
            raise ValueError(
                "give either `data` (a dataset name or path) or pre-split `train` and `test` files"
            )
        if self.train is not None and self.test is None:
            raise ValueError("pre-split training needs `test` as well as `train`")
        if self.train is not None:
            # pre-split files are used as given: a split method/seed or a filter would be silently ignored
            unused = [f"split.{k}" for k in sorted(self.split.model_fields_set - {"protocol"})]
            unused += [f"filters.{k}" for k in sorted(self.filters.model_fields_set)]
            if unused:
                raise ValueError(
                    f"{', '.join(unused)} (CLI --split/--seed) split or filter `data`; the pre-split "
                    "train/valid/test files are used as they are: drop them, or give `data` instead"
                )
        if self.overwrite and self.resume:
            raise ValueError("give `overwrite` (start fresh) or `resume` (continue), not both")
        if (self.overwrite or self.resume) and self.out is None:
            raise ValueError("`overwrite` and `resume` act on a run directory: give `out` as well")
        if "resume" in self.trainer:
            raise ValueError("set the run's `resume` (CLI --resume), not the trainer's")
        return self

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: int | None) -> int | None:
        if value is not None:
            check_threads(value, flag="threads")
        return value

    @field_validator("rating_range")
    @classmethod
    def _scale(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        from attnrec.data.table import parse_rating_range

        try:
            return None if value is None else parse_rating_range(value, flag="rating_range")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @classmethod
    def parse(cls, data: dict[str, Any], *, source: str = "run config") -> RunConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            msgs = [
                f"{source}: field {'.'.join(str(x) for x in e['loc']) or '<root>'!r}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
            ]
            raise ConfigError("; ".join(msgs)) from None

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
            # a byte-order mark (Windows editors write one) is not TOML, but says nothing about the content
            data = tomllib.loads(raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except OSError as exc:  # a folder, no permission
            raise ConfigError(f"config file {path}: cannot read it ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): a run file is TOML") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        return cls.parse(data, source=str(path))

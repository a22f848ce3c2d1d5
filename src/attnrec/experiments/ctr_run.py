"""The CTR side of a run: raw rows -> split -> a :class:`FeatureEncoder` fitted on train only -> :class:`CTRData`.

Two sources, picked by the run config:

* ``data`` (a registered name such as ``ml-100k``, or a MovieLens folder): MovieLens as CTR
  (:func:`~attnrec.data.readers.ctr.movielens_ctr`, label = rating >= ``ctr.threshold``); the interactions are
  filtered and split exactly as an interaction run splits them (:func:`attnrec.experiments.inputs.load_split`),
  then each part becomes CTR rows.
* ``train``/``valid``/``test`` files in ``ctr.format``: ``criteo`` (TAB, no header, or the comma-separated
  header form), ``avazu`` (CSV, with or without its header), ``csv`` (a header row; the ``ctr.feature_schema`` of
  the run file, else a ``label`` column of 0/1 and every other column a categorical field), or ``movielens``
  (a MovieLens folder per part).

:func:`read_ctr_rows` reads one file the same way for ``attnrec evaluate`` / ``attnrec predict`` on a bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError

from attnrec.data.ctr import CTRData, FeatureEncoder
from attnrec.data.readers.ctr import CTRTable, movielens_ctr, read_avazu, read_criteo, read_ctr_table
from attnrec.data.schema import FeatureSchema, FieldSpec
from attnrec.data.table import Dataset
from attnrec.errors import ConfigError, DataError
from attnrec.experiments.config import CTR_FORMATS, CTRSpec, RunConfig
from attnrec.training.types import data_fingerprint


@dataclass
class PreparedCTR:
    """The encoded parts of a CTR run: rows, the encoder fitted on train, and what was done to get them."""

    train: CTRData
    valid: CTRData | None
    test: CTRData
    encoder: FeatureEncoder
    #: a fingerprint of the raw rows of all three parts (labels and fields)
    fingerprint: str
    report: dict[str, Any]
    notes: dict[str, Any]


def check_sep(sep: str, flag: str = "ctr.sep") -> str:
    """``sep`` if it is one single-byte character (the CSV readers split on one byte), else a ConfigError."""
    if len(sep.encode()) != 1:
        raise ConfigError(f"{flag} {sep!r}: expected one single-byte character, e.g. ',' or ';' or a tab")
    return sep


def csv_header(path: Path, sep: str = ",") -> list[str]:
    """The column names on the first line of a CSV file (gzip or plain), read through the readers' byte layer: a
    folder, a missing file, an over-size file or bytes that are not UTF-8 are a DataError naming the file."""
    from attnrec.data.readers.files import decode_text, open_input

    with open_input(path, streaming=True) as fh:
        first = fh.readline(1 << 20)
    names = [h.strip().strip('"') for h in decode_text(first, path).rstrip("\r\n").split(sep)]
    if names == [""]:
        raise DataError("empty file: no header line", file=path, line=1, expected="a CSV file with a header")
    return names


def default_csv_schema(path: Path, sep: str = ",") -> FeatureSchema:
    """``label`` plus every other column of ``path``'s header as a categorical field."""
    header = csv_header(path, sep)
    if "label" not in header:
        raise DataError(
            "no 'label' column",
            file=path,
            value=header,
            expected="a 0/1 'label' column, or [ctr.feature_schema] in the run file naming the label and fields",
        )
    return FeatureSchema(fields=[FieldSpec(name=c) for c in header if c != "label"], label="label")


def read_ctr_file(
    path: Path, fmt: str, spec: CTRSpec, schema: FeatureSchema | None = None, *, progress: bool = False
) -> CTRTable:
    """One file of CTR rows in ``fmt``. ``schema`` (csv): the fields to read (default: ``spec``'s, else
    :func:`default_csv_schema`)."""
    if fmt == "criteo":
        return read_criteo(path, min_count=spec.min_count)
    if fmt == "avazu":
        return read_avazu(path, min_count=spec.min_count)
    if fmt == "csv":
        check_sep(spec.sep)
        schema = schema or spec.feature_schema or default_csv_schema(path, spec.sep)
        return read_ctr_table(path, schema, sep=spec.sep)
    if fmt == "movielens":
        from attnrec.data.registry import load_dataset

        return movielens_ctr(load_dataset(str(path), progress=progress), threshold=spec.threshold)
    raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(CTR_FORMATS)}")


def _movielens_parts(
    cfg: RunConfig, progress: bool
) -> tuple[list[pl.DataFrame], FeatureSchema, dict[str, Any]]:
    """MovieLens as CTR, split like an interaction run: (train, valid, test) frames, schema, split report."""
    from attnrec.experiments.inputs import load_split

    dataset, result, notes = load_split(cfg, progress=progress)
    assert dataset is not None
    tables = [
        movielens_ctr(
            Dataset(dataset.name, part, items=dataset.items, users=dataset.users, source=dataset.source),
            threshold=cfg.ctr.threshold,
            min_count=cfg.ctr.min_count,
        )
        for part in (result.train, result.valid, result.test)
    ]
    report = {**result.report, "source": "movielens", "threshold": cfg.ctr.threshold, "notes": notes}
    return [t.frame for t in tables], tables[0].schema, report


def _file_parts(
    cfg: RunConfig, progress: bool
) -> tuple[list[pl.DataFrame | None], FeatureSchema, dict[str, Any]]:
    fmt = cfg.ctr.format
    if fmt is None:
        raise ConfigError(
            f"model {cfg.model!r} scores CTR rows: give --format criteo|avazu|csv|movielens for the "
            "--train/--valid/--test files (run file: [ctr] format = ...), or --data ml-100k for MovieLens as CTR"
        )
    assert cfg.train is not None and cfg.test is not None
    paths = {"train": cfg.train, "valid": cfg.valid, "test": cfg.test}
    tables = {k: read_ctr_file(p, fmt, cfg.ctr, progress=progress) for k, p in paths.items() if p is not None}
    schema = tables["train"].schema
    for part, t in tables.items():
        if part != "train" and t.schema.names != schema.names:
            raise DataError(
                "the fields differ from the train file's",
                file=paths[part],
                value=t.schema.names,
                expected=f"the fields of {paths['train']}: {schema.names}",
            )
    skipped = {k: t.notes["skipped_rows"] for k, t in tables.items() if t.notes.get("skipped_rows")}
    report = {
        "method": "presplit",
        "format": fmt,
        "files": {k: str(p) for k, p in paths.items() if p is not None},
        "skipped_rows": skipped,
    }
    frames = [tables[k].frame if k in tables else None for k in ("train", "valid", "test")]
    return frames, schema, report


def prepare_ctr(cfg: RunConfig, *, progress: bool = True) -> PreparedCTR:
    """Read, split and encode a CTR run's rows; the encoder sees the training rows only."""
    if cfg.items is not None:
        raise ConfigError(
            f"--items: model {cfg.model!r} scores CTR rows, whose features come from the rows themselves "
            "(MovieLens as CTR reads the dataset's own item table)"
        )
    if cfg.columns and cfg.train is not None:
        raise ConfigError(
            "--columns renames interaction files; a CTR csv names its label and fields in the run file's "
            "[ctr.feature_schema]"
        )
    frames: list[pl.DataFrame | None]
    if cfg.train is not None:
        frames, schema, report = _file_parts(cfg, progress)
    else:
        if cfg.ctr.format not in (None, "movielens"):
            raise ConfigError(
                f"--format {cfg.ctr.format}: --data is read as MovieLens as CTR; give criteo/avazu/csv files as "
                "--train/--valid/--test"
            )
        parts, schema, report = _movielens_parts(cfg, progress)
        frames = list(parts)
    train_f, valid_f, test_f = frames
    assert train_f is not None and test_f is not None
    if cfg.ctr.min_count > 1:
        schema = FeatureSchema(
            fields=[f.model_copy(update={"min_count": cfg.ctr.min_count}) for f in schema.fields],
            label=schema.label,
        )
    encoder = FeatureEncoder(schema).fit(train_f)
    train = encoder.transform(train_f, source="train")
    valid = encoder.transform(valid_f, source="valid") if valid_f is not None and valid_f.height else None
    test = encoder.transform(test_f, source="test")
    oov = dict(encoder.last_oov_counts)
    if len(test) == 0:
        raise ConfigError("the test split is empty: nothing to evaluate")
    sizes = {"train": len(train), "valid": len(valid) if valid is not None else 0, "test": len(test)}
    report = {**report, "sizes": sizes, "positive_rate": {"train": round(train.positive_rate, 4)}}
    return PreparedCTR(
        train,
        valid,
        test,
        encoder,
        data_fingerprint(*[f for f in frames if f is not None]),
        report,
        {"test_unknown_values": {k: v for k, v in oov.items() if v}},
    )


def bundle_ctr_spec(cfg: RunConfig) -> dict[str, Any]:
    """The run's :class:`CTRSpec` as its bundle stores it (manifest ``extra.ctr``); rows from ``data`` were read
    as MovieLens, so that format is named."""
    fmt = cfg.ctr.format or ("movielens" if cfg.data is not None else None)
    return cfg.ctr.model_copy(update={"format": fmt}).model_dump(mode="json")


def saved_ctr_spec(model_dir: Path) -> CTRSpec:
    """The :class:`CTRSpec` a CTR bundle was trained with (format, threshold, sep, min_count, feature schema);
    the defaults for a bundle saved before the spec was stored. Call after ``load_bundle`` has verified it."""
    from attnrec.serving.bundle import MANIFEST, bundle_extra

    path = Path(model_dir) / MANIFEST
    extra = bundle_extra(model_dir)
    spec = extra.get("ctr")
    if spec is None:
        return CTRSpec()
    try:
        return CTRSpec.model_validate(spec)
    except ValidationError as exc:
        raise DataError(
            f"invalid: {exc.errors()[0]['msg']}", file=path, field="extra.ctr", value=spec
        ) from None


def read_ctr_rows(
    path: Path,
    fmt: str | None,
    encoder: FeatureEncoder,
    *,
    spec: CTRSpec | None = None,
    need_label: bool = True,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Raw rows of ``path`` for a fitted ``encoder`` (``attnrec evaluate`` / ``predict`` on a CTR bundle).

    ``fmt`` as for training; ``spec``: how the run read its rows (:func:`saved_ctr_spec`: the csv separator,
    MovieLens' label threshold); ``csv`` reads the encoder's label and fields. With ``need_label=False`` a csv file
    without the label column is read too (for predictions). Returns the frame and the reader's notes."""
    if fmt is None:
        raise ConfigError("a CTR bundle scores rows: give --format criteo|avazu|csv|movielens for the file")
    spec = spec or CTRSpec()
    schema = encoder.schema
    if fmt == "csv" and not need_label and schema.label not in csv_header(path, spec.sep):
        from attnrec.data.readers.files import read_text
        from attnrec.data.readers.tabular import read_delimited

        frame, checker = read_delimited(
            read_text(path), Path(path), sep=spec.sep, has_header=True, on_bad_lines="error"
        )
        casts = [pl.col(f.name).cast(pl.Float64, strict=False) for f in schema.fields if f.kind == "numeric"]
        return frame.drop("line").with_columns(casts), checker.notes()
    table = read_ctr_file(path, fmt, spec, schema if fmt == "csv" else None)
    return table.frame, dict(table.notes)


def evaluate_ctr(model: Any, rows: CTRData) -> dict[str, float]:
    """CTR-protocol metrics (AUC, logloss, ECE, n) of ``model`` on ``rows`` as it predicts (calibrated when it holds
    a calibrator), plus ``raw_auc``, ``raw_logloss``, ``raw_ece`` of the uncalibrated model in that case, so a run's
    metrics.json reports the raw model beside the calibrated one."""
    from attnrec.evaluation.protocols import CTR
    from attnrec.evaluation.sharded import evaluate  # sharded across ranks in a distributed run

    metrics = evaluate(model, rows, CTR())
    if getattr(model, "calibrator", None) is not None:
        raw = evaluate(model.uncalibrated(), rows, CTR())
        metrics.update({f"raw_{k}": raw[k] for k in ("auc", "logloss", "ece")})
    return metrics

"""Helpers of the command line (:mod:`attnrec.cli`): option parsing, tables that fit the console, CTR row reading.

Kept apart so that ``cli.py`` stays the list of commands; nothing here parses argv or prints unless handed a console.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from attnrec.errors import AttnrecError, ConfigError, OutputError
from attnrec.paths import atomic_write, check_output_dir, describe_os_error, prepare_output_dir


def output_path(text: str | Path) -> Path:
    """An ``--out`` value: refused when empty (an unset shell variable would otherwise mean this folder). A default
    that is already a Path (``demo --out``'s) passes through."""
    if isinstance(text, Path):
        return text
    if not text.strip():
        raise typer.BadParameter("an empty path (an unset variable?): give a path, or . for this folder")
    return Path(text)


def parse_value(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, booleans, lists), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sets(items: list[str] | None, flag: str) -> dict[str, Any]:
    """Repeated ``KEY=VALUE`` options (``flag`` names them in errors) as a dict of parsed values."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = parse_value(value.strip())
    return out


COUNT_KEYS = {"n", "n_users", "n_rows", "graded_ndcg_users"}
#: torch CPU threads when --threads is not given: on the shared 2-core machine one thread was never slower and
#: often much faster than two (BENCHMARKS.md, "CLI default threads")
DEFAULT_THREADS = 1

# typer options that several commands share
OnBadLines = Annotated[
    Literal["error", "skip"],
    typer.Option(help="'error' stops at the first malformed line; 'skip' skips and counts them."),
]
RatingRangeOpt = Annotated[
    str | None,
    typer.Option(
        help="the ratings' scale LOW,HIGH, e.g. 1,5: a rating outside it is an error (--on-bad-lines skip: "
        "dropped and counted) and predictions are clipped to it; default: inferred from the training ratings"
    ),
]
CTRFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="CTR rows: criteo | avazu | csv (header; a 0/1 'label' column) | movielens (a MovieLens folder); "
        "evaluate/predict default to the bundle's run's format",
    ),
]
SepOpt = Annotated[
    str | None,
    typer.Option(help="CTR csv rows: the field separator (default: the one the bundle's run read)"),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(min=1, help=f"torch CPU threads (default {DEFAULT_THREADS}: fastest on a shared machine)"),
]
TrustBundleOpt = Annotated[
    bool,
    typer.Option(
        "--trust-bundle",
        help="the bundle is from someone you trust: it may import the model class it names and load the text "
        "encoder it names from a folder or the Hugging Face hub (otherwise only registered models, offline)",
    ),
]


def metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    """One row per metric, one column per run (valid, test...): narrow enough for an 80-column or piped terminal
    however many metrics there are; values in fixed 4-decimal format, never truncated."""
    keys: list[str] = []
    for m in rows.values():
        keys += [k for k in m if k not in keys and k not in COUNT_KEYS and isinstance(m[k], int | float)]
    table = Table(title=escape(title))
    table.add_column("metric", no_wrap=True)
    for name in rows:
        table.add_column(name, justify="right", no_wrap=True, min_width=9)
    for k in keys:
        table.add_row(k, *[f"{rows[name][k]:.4f}" if k in rows[name] else "" for name in rows])
    return table


def parse_columns(text: str | None) -> dict[str, str]:
    """``"userId=user_id,movieId=item_id"`` -> ``{"userId": "user_id", "movieId": "item_id"}``."""
    out: dict[str, str] = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        src, sep, dst = pair.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise ConfigError(f"--columns {pair!r}: expected FILE_COLUMN=CANONICAL, e.g. userId=user_id")
        out[src.strip()] = dst.strip()
    return out


def quiet_progress() -> None:
    """--no-progress: no download or loading bars from Hugging Face libraries either (the sentence encoder)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub is first imported
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def set_threads(threads: int | None) -> None:
    """torch CPU threads: ``threads`` (at most the usable CPUs, else a ConfigError), else :data:`DEFAULT_THREADS`."""
    import torch

    from attnrec.experiments.config import check_threads

    if threads is not None:
        check_threads(threads)
    torch.set_num_threads(threads or DEFAULT_THREADS)


def ctr_rows(
    model: Any, model_dir: Path, path: Path, fmt: str | None, sep: str | None, *, need_label: bool
) -> tuple[Any, dict[str, Any]]:
    """``path``'s rows encoded by a CTR bundle's own encoder (``evaluate``/``predict``), read with the run's
    :class:`CTRSpec` (``--format`` and ``--sep`` override its format and separator), and the reader's notes."""
    from attnrec.experiments.ctr_run import check_sep, read_ctr_rows, saved_ctr_spec

    if model.encoder is None:
        raise ConfigError(f"the {model.name} bundle has no feature encoder: it cannot read raw rows")
    spec = saved_ctr_spec(model_dir)
    if sep is not None:
        spec = spec.model_copy(update={"sep": check_sep(sep, "--sep")})
    frame, notes = read_ctr_rows(path, fmt or spec.format, model.encoder, spec=spec, need_label=need_label)
    if model.encoder.schema.label not in frame.columns:
        import polars as pl

        frame = frame.with_columns(pl.lit(0).alias(model.encoder.schema.label))
    return model.encoder.transform(frame, source=str(path)), notes


#: control characters (C0 but newline and tab, DEL, C1) and bidirectional overrides: in a title or an id they
#: would reach the terminal as commands (colours, the window title, reordered text); printed as escapes instead
_UNPRINTABLE = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
    if chr(c) not in "\n\t"
}


def visible(text: str) -> str:
    """``text`` with terminal control characters and bidi overrides written as ``\\xNN`` / ``\\uNNNN`` escapes."""
    return text.translate(_UNPRINTABLE)


def print_frame(console: Console, df: Any, title: str) -> None:
    """A frame as a table that fits the console (80 columns when piped): numbers and flags keep their full
    fixed-format width (their headers fold when the frame is wide); text columns wrap."""
    import polars as pl
    from rich import box

    cells = [
        ["" if v is None else f"{v:.3f}" if isinstance(v, float) else visible(str(v)) for v in row]
        for row in df.iter_rows()
    ]
    fixed = [dtype.is_numeric() or dtype == pl.Boolean for dtype in df.schema.values()]
    value_w = [max([len(r[j]) for r in cells] + [1]) for j in range(len(df.columns))]

    def widths(headers: bool) -> list[int]:
        return [
            max(w, len(c) if headers else 5) if f else min(max(w, len(c) if headers else 1), 12)
            for c, w, f in zip(df.columns, value_w, fixed, strict=True)
        ]

    wide = widths(True)
    # each column costs its width plus 3: one space of padding either side and the box's column separator
    chosen = wide if sum(wide) + 3 * len(wide) <= console.width else widths(False)
    table = Table(title=escape(visible(title)), box=box.SIMPLE_HEAD, pad_edge=False)
    for col, w, f, dtype in zip(df.columns, chosen, fixed, df.schema.values(), strict=True):
        right = f and dtype.is_numeric()
        table.add_column(
            escape(visible(col)),
            justify="right" if right else "left",
            overflow="fold",
            min_width=w,
            # text columns too: left unbounded, rich grows them to their longest value and then crops the last
            # column of a piped 80-column table instead of wrapping
            max_width=w,
        )
    for row in cells:
        # item titles and ids are data, never markup ("[REC]") nor terminal control sequences
        table.add_row(*map(escape, row))
    console.print(table)


# ------------------------------------------------------------------------------------------------ errors
#: set to 1 to see the traceback of any error, the clean ones included
DEBUG_ENV = "ATTNREC_DEBUG"
#: errno values that say something about the place written to, not about attnrec's code
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def debug_enabled() -> bool:
    """``$ATTNREC_DEBUG`` is set to something other than ``0``: show tracebacks for every error."""
    return os.environ.get(DEBUG_ENV, "0").strip() not in ("", "0")


def error_message(exc: BaseException) -> str | None:
    """The one line the CLI prints for ``exc``, or None for a genuine bug (its traceback is shown).

    attnrec's own errors; an operating-system failure on a path (a missing file, no permission, a folder where a
    file is expected, a full disk); a file that is not UTF-8 text; running out of memory. Anything else is a bug."""
    hint = f" ({DEBUG_ENV}=1 shows where)"
    if isinstance(exc, AttnrecError):
        return str(exc)
    if isinstance(exc, OSError):
        reason = describe_os_error(exc)
        if exc.filename is not None:
            second = f" -> {exc.filename2}" if exc.filename2 is not None else ""
            return f"{exc.filename}{second}: {reason}"
        path_kinds = (
            FileNotFoundError,
            FileExistsError,
            PermissionError,
            IsADirectoryError,
            NotADirectoryError,
        )
        if isinstance(
            exc, path_kinds
        ):  # raised without a filename attribute (polars puts the path in the text)
            return str(exc)
        if exc.errno in _WRITE_ERRNOS:
            return reason + hint
        return None
    if isinstance(exc, UnicodeDecodeError):
        byte = exc.object[exc.start : exc.start + 1].hex() if isinstance(exc.object, bytes) else "?"
        return f"a file is not {exc.encoding} text: byte 0x{byte} at offset {exc.start} ({exc.reason}){hint}"
    if isinstance(exc, MemoryError):
        return "out of memory: the input is too large for this machine's memory" + hint
    if isinstance(exc, RuntimeError) and _is_torch_oom(exc):
        # torch reports a failed allocation as a RuntimeError (its CUDA one is torch.OutOfMemoryError, a subclass)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"out of memory: {first} (a model size such as --set dim=..., the batch size or the data is too large "
            "for this machine)" + hint
        )
    return None


def _is_torch_oom(exc: RuntimeError) -> bool:
    """A torch allocation failure (CPU allocator or CUDA out of memory), told apart from other RuntimeErrors."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return "can't allocate memory" in text or "CUDA out of memory" in text


def run_app(app: Callable[[], object]) -> None:
    """Run the Typer ``app`` as the ``attnrec`` command: a clean error is one ``error:`` line on stderr and exit
    status 2; Ctrl-C is one line and status 130; a bug keeps its traceback (any error with ``ATTNREC_DEBUG=1``)."""
    err = Console(stderr=True, soft_wrap=True)
    try:
        app()
    except SystemExit as exc:
        if exc.code == 130:  # click turns Ctrl-C inside a command into exit status 130, silently
            err.print("interrupted", style="bold red", highlight=False)
        raise
    except KeyboardInterrupt:
        err.print("interrupted", style="bold red", highlight=False)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - sorted into clean errors and bugs just below
        message = None if debug_enabled() else error_message(exc)
        if message is None:
            raise
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        sys.exit(2)


#: the results files --out writes, by suffix (any case)
RESULT_SUFFIXES = (".csv", ".parquet")


def check_output_file(path: Path | None, flag: str = "--out") -> None:
    """Before any work: a results file ``path`` must not be a folder, and its folder must exist or be creatable
    (:func:`write_frame` creates it); :class:`~attnrec.errors.OutputError` names ``flag`` and the path otherwise."""
    if path is None:
        return
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name ending in .csv or .parquet")
    if path.suffix.lower() not in RESULT_SUFFIXES:
        # anything else was written as CSV under the name given (a recs.json holding CSV)
        raise OutputError(f"{flag} {path}: give a file name ending in .csv or .parquet (the format written)")
    check_output_dir(path.parent, flag=f"{flag} {path}: its folder")


def write_frame(frame: Any, path: Path) -> None:
    """Write a polars frame to ``path`` (Parquet for a ``.parquet`` suffix, else CSV), atomically; a missing
    folder is created, as ``train`` creates its ``--out``."""
    prepare_output_dir(path.parent)
    if path.suffix.lower() == ".parquet":
        atomic_write(path, frame.write_parquet, what="results")
    else:
        atomic_write(path, frame.write_csv, what="results")


def ctr_metric_rows(model: Any, rows: Any) -> dict[str, dict[str, float]]:
    """A CTR model's metrics on encoded ``rows`` for a table: ``{"test": ...}`` when it has no calibrator, else
    ``{"test (<method>)": calibrated, "test (raw)": uncalibrated}`` (the raw model reported separately)."""
    from attnrec.evaluation.protocols import CTR, evaluate

    metrics = evaluate(model, rows, CTR())
    if model.calibrator is None:
        return {"test": metrics}
    return {
        f"test ({model.calibrator.method})": metrics,
        "test (raw)": evaluate(model.uncalibrated(), rows, CTR()),
    }


def write_reliability(model: Any, rows: Any, path: Path, n_bins: int = 15) -> Path:
    """Write the reliability curves of a CTR model on encoded ``rows`` (raw, and calibrated when it has a
    calibrator): ``.json`` holds the per-bin data and ECE, any other suffix (.png, .svg, .pdf) a plot (plots extra)."""
    from attnrec.evaluation.calibration import plot_reliability, reliability_curve
    from attnrec.paths import atomic_write_text

    labels = rows.labels
    curves = {"raw": reliability_curve(labels, model.predict_proba(rows, calibrated=False), n_bins)}
    if model.calibrator is not None:
        curves[model.calibrator.method] = reliability_curve(labels, model.predict_proba(rows), n_bins)
    if path.suffix.lower() == ".json":
        data = {name: {"ece": c.ece(), "max_gap": c.max_gap(), **c.as_dict()} for name, c in curves.items()}
        atomic_write_text(path, json.dumps(data, indent=1), what="reliability curve")
        return path
    return plot_reliability(curves, path, title=f"{model.name}: reliability ({len(rows)} rows)")


def check_heldout_not_masked(console: Console, data: Any, mask: Any, test: Path, exclude: list[Path]) -> None:
    """A held-out pair among the masked items can never be ranked, so it counts as a miss: all of them masked
    (the training file given as --test, or --test also given to --exclude) is an error, not a table of zeros;
    some of them is a warning with the count."""
    import numpy as np

    masked = int((np.asarray(mask[data.users, data.items]).ravel() != 0).sum())
    if masked == 0:
        return
    where = "the model's training items" + "".join(f" + {p}" for p in exclude)
    if masked == len(data):
        raise ConfigError(
            f"{test}: every one of its {masked} held-out (user, item) pairs is masked ({where}), so none can be "
            "ranked and every metric would be 0: is --test the training file, or also given to --exclude?"
        )
    console.print(
        f"warning: {masked} of {len(data)} held-out pairs in {test} are masked ({where}) and count as misses",
        style="yellow",
        markup=False,
    )


def say_if_short(console: Console, rows: int, k: int, queries: int) -> None:
    """A "top-k" table with fewer than k rows a query says so: the catalogue (less the excluded items) ran out."""
    if rows < k * queries:
        console.print(
            f"[yellow]{rows} recommendation(s) for {queries} quer{'y' if queries == 1 else 'ies'}, fewer than the "
            f"{k * queries} asked (k={k}): no more items could be ranked (a small catalogue, or seen items excluded)[/]"
        )

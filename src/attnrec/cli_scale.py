"""``attnrec tune`` (hyper-parameter search with Optuna) and ``attnrec data ingest`` (streaming ingest of Amazon
dumps): commands registered in :mod:`attnrec.cli`. Thin: they parse, call :mod:`attnrec.experiments.tune` and
:mod:`attnrec.data.ingest`, and print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from attnrec.cli_common import DEFAULT_THREADS, ThreadsOpt, metrics_table, output_path, quiet_progress

console = Console()


def tune_cmd(
    config: Annotated[Path, typer.Option(help="the TOML run file: model, data, split, fixed settings")],
    space: Annotated[
        Path,
        typer.Option(
            help="the TOML space file: tables study, model.FIELD and trainer.FIELD (docs/scaling.md)"
        ),
    ],
    trials: Annotated[int, typer.Option(min=1, help="trials in the study, all workers together")],
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL shared by the workers (default: sqlite:///OUT/study.db)"),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="default: MODEL-<digest of the run and space files>")
    ] = None,
    out: Annotated[
        Path,
        typer.Option(parser=output_path, help="report, best_run.toml and the tested best run (OUT/best)"),
    ] = Path("runs/tune"),
    worker: Annotated[
        int, typer.Option(min=0, help="this worker's number: the sampler's seed is seed + worker")
    ] = 0,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="stop asking for trials after this many seconds")
    ] = None,
    retrain: Annotated[
        bool,
        typer.Option(help="when every trial has finished, retrain the best and test it (once per study)"),
    ] = True,
    plots: Annotated[bool, typer.Option(help="draw history.png and importance.png (the plots extra)")] = True,
    threads: ThreadsOpt = None,
    progress: bool = False,
) -> None:
    """Search hyper-parameters on the validation split (Optuna; the `tune` extra). Workers started with the same
    files and --storage join one study; together they run --trials trials. When all have finished, the best trial
    is retrained into OUT/best and tested once; the report is OUT/report.md."""
    import optuna

    from attnrec.errors import ConfigError
    from attnrec.experiments.config import RunConfig
    from attnrec.experiments.tune import SearchSpace, tune

    if not progress:
        quiet_progress()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = RunConfig.from_toml(config)
    if threads is not None or cfg.threads is None:
        cfg = cfg.model_copy(update={"threads": threads or DEFAULT_THREADS})
    if cfg.out is not None:
        raise ConfigError(
            f"{config}: `out` is for `attnrec train`; tune writes into --out ({out}) and OUT/best"
        )
    search_space = SearchSpace.from_toml(space)

    def say(t: optuna.trial.FrozenTrial) -> None:
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items()
        )
        value = "" if t.value is None else f" {t.value:.5g}"
        console.print(
            f"trial {t.number}: {t.state.name.lower()}{value}  {params}", markup=False, soft_wrap=True
        )

    result = tune(
        cfg,
        search_space,
        n_trials=trials,
        out=out,
        storage=storage,
        name=study_name,
        worker=worker,
        timeout=timeout,
        retrain=retrain,
        plots=plots,
        progress=progress,
        on_trial=say,
    )
    console.print(f"study {result.study.study_name}: {result.note}", markup=False)
    if result.best is not None:
        m = result.best.metrics
        console.print(
            metrics_table(f"best trial, retrained: {m['model']}", {"valid": m["valid"], "test": m["test"]})
        )
    console.print(f"report in {result.files['report']}", markup=False)


def ingest_cmd(
    files: Annotated[
        list[Path], typer.Argument(help="Amazon review files (2014 / 2018 / 2023 JSON lines, gzip)")
    ],
    out: Annotated[
        Path, typer.Option(parser=output_path, help="folder for the Parquet files and manifest.json")
    ],
    user_k: Annotated[
        int, typer.Option(min=0, help="keep users with at least this many reviews (k-core)")
    ] = 0,
    item_k: Annotated[
        int, typer.Option(min=0, help="keep items with at least this many reviews (k-core)")
    ] = 0,
    text: Annotated[bool, typer.Option(help="keep the review text and summary columns")] = True,
    on_bad_lines: Annotated[
        str,
        typer.Option(help="a malformed line: 'error' stops with its file and line; 'skip' drops and counts"),
    ] = "error",
    block_mb: Annotated[
        int, typer.Option(min=1, help="MiB of text parsed at a time (memory is a few blocks)")
    ] = 32,
) -> None:
    """Stream review dumps of any size into Parquet in one pass: OUT/reviews.parquet (every row),
    OUT/interactions.parquet (the k-core, with user_index / item_index), OUT/users.parquet and OUT/items.parquet
    (the vocabularies), OUT/manifest.json. `attnrec train --data OUT/interactions.parquet` reads the result."""
    from attnrec.data.ingest import ingest_amazon
    from attnrec.errors import ConfigError

    if on_bad_lines not in ("error", "skip"):
        raise ConfigError(f"--on-bad-lines {on_bad_lines!r}: expected 'error' or 'skip'")
    report = ingest_amazon(
        files,
        out,
        user_k=user_k,
        item_k=item_k,
        text=text,
        on_bad_lines=on_bad_lines,  # type: ignore[arg-type]
        block_bytes=block_mb << 20,
    )
    for src in report.sources:
        skipped = f", {src.skipped_rows} bad line(s) skipped" if src.skipped_rows else ""
        console.print(
            f"{src.path}: amazon {src.version} ({src.encoding}), {src.rows} rows{skipped}", markup=False
        )
    k = report.kcore
    console.print(
        f"k-core (users >= {user_k}, items >= {item_k}): {report.rows_read} -> {report.rows_kept} rows, "
        f"{k['users_before']} -> {report.users} users, {k['items_before']} -> {report.items} items, "
        f"{k['rounds']} round(s)",
        markup=False,
    )
    secs = ", ".join(f"{name} {s:.1f}s" for name, s in report.seconds.items())
    console.print(f"{secs}; written to {report.out}", markup=False)

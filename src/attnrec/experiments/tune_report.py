"""The report of a tuning study (:mod:`attnrec.experiments.tune`): a table of every trial, the best settings, the
retrained run's test metrics, and two plots through Optuna's matplotlib views (the ``plots`` extra).

Files written into ``out``: ``trials.csv`` (one row per trial), ``report.md`` (the study, the best trial, the test
metrics once tested, and the table sorted best first), ``best_run.toml`` (the run file of the best trial: rerun it
with ``attnrec train --config``), ``history.png`` (optimisation history) and ``importance.png`` (parameter
importance, fANOVA; needs two completed trials and a parameter that varied).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import tomli_w

from attnrec.errors import MissingExtraError, require
from attnrec.experiments.config import RunConfig
from attnrec.paths import atomic_write_text

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


def trials_frame(study: optuna.Study) -> pl.DataFrame:
    """One row per trial: ``trial, state, value, epochs`` (run, or the epoch a pruned trial stopped at),
    ``best_epoch, seconds, worker``, then one column per searched parameter (``model.reg``, ``trainer.lr``...)."""
    rows: list[dict[str, Any]] = []
    names = sorted({k for t in study.get_trials(deepcopy=False) for k in t.params})
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        value = t.value
        if value is None and t.intermediate_values:  # a pruned trial: its last reported validation value
            value = t.intermediate_values[max(t.intermediate_values)]
        epochs = attrs.get("epochs")
        if epochs is None and t.intermediate_values:
            epochs = max(t.intermediate_values)
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "value": value,
                "epochs": epochs,
                "best_epoch": attrs.get("best_epoch"),
                "seconds": attrs.get("seconds"),
                "worker": attrs.get("worker"),
                **{k: json.dumps(t.params[k]) if k in t.params else None for k in names},
            }
        )
    schema = {
        "trial": pl.Int64,
        "state": pl.String,
        "value": pl.Float64,
        "epochs": pl.Int64,
        "best_epoch": pl.Int64,
        "seconds": pl.Float64,
        "worker": pl.String,
        **dict.fromkeys(names, pl.String),
    }
    return pl.DataFrame(rows, schema=schema)


def write_report(
    study: optuna.Study,
    out: Path,
    *,
    storage: str | None,
    n_trials: int,
    best_run: RunConfig | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write the report files into ``out`` (see the module docstring; ``best_run``: the best trial's run file, which
    :func:`~attnrec.experiments.tune.best_run_config` makes); returns name -> path of those written."""
    out.mkdir(parents=True, exist_ok=True)
    frame = trials_frame(study)
    files = {"trials": out / "trials.csv"}
    atomic_write_text(files["trials"], frame.write_csv(), what="trials table")
    metric = study.user_attrs.get("metric", "value")
    direction = study.direction.name.lower()
    lines = [
        f"# Tuning study `{study.study_name}`",
        "",
        f"- storage: `{storage or 'in memory'}`",
        f"- model: `{study.user_attrs.get('model')}`; metric: validation `{metric}` ({direction})",
        f"- trials: {frame.height} of {n_trials} — "
        + ", ".join(f"{n} {s}" for s, n in frame.group_by("state").len().sort("state").iter_rows()),
    ]
    complete = frame.filter(pl.col("state") == "complete")
    if complete.height:
        best = study.best_trial
        lines.append(
            f"- best: trial {best.number}, valid {metric} {best.value:.6g}, settings `{json.dumps(best.params)}`"
        )
    if complete.height and best_run is not None:
        files["best_run"] = out / "best_run.toml"
        run = best_run.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        atomic_write_text(files["best_run"], tomli_w.dumps(run), what="best run file")
    tested = study.user_attrs.get("tested")
    if tested and "test" in tested:
        shown = ", ".join(f"{k} {v:.6g}" for k, v in tested["test"].items() if isinstance(v, int | float))
        lines.append(f"- retrained trial {tested['trial']} into `{tested['out']}` and tested once: {shown}")
    else:
        lines.append(
            "- not tested yet (the best trial is retrained and tested once, when every trial has finished)"
        )
    lines += ["", _markdown(_ranked(complete, frame, direction)), ""]
    if plots:
        files.update(_plots(study, out, lines))
    files["report"] = out / "report.md"
    atomic_write_text(files["report"], "\n".join(lines) + "\n", what="tuning report")
    return files


def _ranked(complete: pl.DataFrame, frame: pl.DataFrame, direction: str) -> pl.DataFrame:
    """Completed trials best first, then the others in trial order."""
    rest = frame.filter(pl.col("state") != "complete").sort("trial")
    return pl.concat([complete.sort("value", descending=direction == "maximize"), rest])


def _markdown(frame: pl.DataFrame) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    cols = [c for c in frame.columns if c != "worker"]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)
    body = ["| " + " | ".join(cell(row[c]) for c in cols) + " |" for row in frame.iter_rows(named=True)]
    return "\n".join([head, *body])


def _plots(study: optuna.Study, out: Path, lines: list[str]) -> dict[str, Path]:
    """history.png and importance.png (the ``plots`` extra); a plot that cannot be drawn is said in ``lines``."""
    try:
        require("matplotlib", "plots")
    except MissingExtraError as exc:
        lines.append(f"No plots: {exc}")
        log.warning("tuning report without plots: %s", exc)
        return {}
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; a backend the caller chose is kept
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as views

    files: dict[str, Path] = {}
    for name, view in (
        ("history", views.plot_optimization_history),
        ("importance", views.plot_param_importances),
    ):
        path = out / f"{name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib views experimental
                view(study)
            fig = plt.gcf()  # the figure the view drew into
            fig.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(fig)
            files[name] = path
            lines.append(f"![{name}]({path.name})")
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            lines.append(f"No {name} plot: {exc}")
    return files

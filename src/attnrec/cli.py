"""The command line: parses, calls the library, prints. No logic lives here.

Errors that attnrec raises on purpose (bad data, bad config, unknown ids, missing extras) are printed as one
clear line and exit with status 2; nothing else is swallowed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from attnrec.errors import AttnrecError, ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="attnrec: attention-based recommendation — data, training, evaluation.",
)
data_app = typer.Typer(no_args_is_help=True, help="Fetch, inspect and split datasets.")
app.add_typer(data_app, name="data")
console = Console()

OnBadLines = Annotated[
    str, typer.Option(help="'error' stops at the first malformed line; 'skip' skips and counts them.")
]


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_sets(items: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = _parse_value(value.strip())
    return out


COUNT_KEYS = {"n", "n_users", "n_rows"}


def _metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    keys: list[str] = []
    for m in rows.values():
        keys += [k for k in m if k not in keys and k not in COUNT_KEYS]
    table = Table(title=title)
    table.add_column("run")
    for k in keys:
        table.add_column(k, justify="right")
    for name, m in rows.items():
        table.add_row(name, *[f"{m[k]:.4f}" if k in m else "" for k in keys])
    return table


# ------------------------------------------------------------------------------------------------ models
@app.command("models")
def models_cmd() -> None:
    """List every registered model with its task and paper."""
    from attnrec.models.base import available_models

    table = Table(title="registered models")
    for col in ("name", "task", "paper", "config fields"):
        table.add_column(col)
    for name, cls in available_models().items():
        table.add_row(name, str(cls.task), cls.paper, ", ".join(cls.config_class.model_fields))
    console.print(table)


# ------------------------------------------------------------------------------------------------ data
@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="a registered dataset, e.g. ml-100k")],
    home: Annotated[
        Path | None, typer.Option(help="cache directory (default $ATTNREC_HOME or ~/.cache/attnrec)")
    ] = None,
) -> None:
    """Download a registered dataset (checksums verified) into the cache; says which source was used."""
    from attnrec.data.registry import fetch

    res = fetch(name, home=home)
    console.print(f"[green]{name}[/] ready at {res.path} (source: {res.source})")


@data_app.command("info")
def data_info(
    source: Annotated[str, typer.Argument(help="a registered dataset name or a path")],
    on_bad_lines: OnBadLines = "error",
) -> None:
    """Counts, density, rating values and time range of a dataset."""
    from attnrec.data.registry import load_dataset

    ds = load_dataset(source, on_bad_lines=on_bad_lines)
    table = Table(title=f"dataset {ds.name}", show_header=False)
    for k, v in ds.info().items():
        table.add_row(k, f"{v:.6f}" if isinstance(v, float) else str(v))
    for k, v in ds.notes.items():
        table.add_row(k, str(v))
    console.print(table)


@data_app.command("split")
def data_split(
    source: Annotated[str, typer.Argument(help="a registered dataset name or a path")],
    out: Annotated[Path, typer.Option(help="directory for train.csv, valid.csv, test.csv and split.json")],
    method: Annotated[
        str, typer.Option(help="random | random_per_user | temporal | temporal_per_user | leave_last_out")
    ] = "random",
    ratios: Annotated[str, typer.Option(help="train,valid,test shares")] = "0.8,0.1,0.1",
    seed: int = 2026,
    user_k: Annotated[int, typer.Option(help="k-core: minimum interactions per user")] = 0,
    item_k: Annotated[int, typer.Option(help="k-core: minimum interactions per item")] = 0,
    dedup: Annotated[
        str, typer.Option(help="none | last | first | mean, on repeated (user, item) pairs")
    ] = "none",
    on_bad_lines: OnBadLines = "error",
) -> None:
    """Split a dataset and export it with the original ids, so other libraries run on exactly the same split."""
    from attnrec.data import filters
    from attnrec.data.registry import load_dataset
    from attnrec.data.splits import export_split, split

    ds = load_dataset(source, on_bad_lines=on_bad_lines)
    df = ds.interactions
    if dedup != "none":
        df, _ = filters.deduplicate(df, policy=dedup)  # type: ignore[arg-type]  # validated by deduplicate
    if user_k or item_k:
        df, _ = filters.kcore(df, user_k, item_k)
    try:
        r = tuple(float(x) for x in ratios.split(","))
    except ValueError:
        raise ConfigError(f"--ratios {ratios!r}: expected three numbers like 0.8,0.1,0.1") from None
    kw: dict[str, Any] = {}
    if method != "leave_last_out":
        kw["ratios"] = r
    if method.startswith("random"):
        kw["seed"] = seed
    result = split(df, method, **kw)
    export_split(result, out)
    sizes = result.report.get("sizes", {})
    console.print(f"[green]split written to {out}[/]: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    if result.report.get("dropped"):
        console.print(f"dropped from valid/test (user or item unseen in train): {result.report['dropped']}")


# ------------------------------------------------------------------------------------------------ train
@app.command("train")
def train_cmd(
    config: Annotated[Path | None, typer.Option(help="a TOML run file (flags below override it)")] = None,
    model: Annotated[
        str | None, typer.Option(help="model name (see `attnrec models`) or import path")
    ] = None,
    data: Annotated[str | None, typer.Option(help="registered dataset name or path")] = None,
    train: Annotated[Path | None, typer.Option(help="pre-split training file (CSV/Parquet)")] = None,
    valid: Annotated[Path | None, typer.Option(help="pre-split validation file")] = None,
    test: Annotated[Path | None, typer.Option(help="pre-split test file")] = None,
    out: Annotated[
        Path | None, typer.Option(help="run directory: metrics.json, train_log.jsonl, model/")
    ] = None,
    split_method: Annotated[
        str | None, typer.Option("--split", help="split method when --data is given")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="split seed")] = None,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--set", help="model hyper-parameter KEY=VALUE (repeatable)")
    ] = None,
    trainer_set: Annotated[
        list[str] | None, typer.Option("--trainer-set", help="trainer option KEY=VALUE")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="--out holds a run: delete its checkpoints, metrics, log and model first")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="continue the run in --out from its checkpoint (same model, trainer, data)")
    ] = False,
    progress: bool = True,
) -> None:
    """Train a model, evaluate on validation and test, write metrics.json and a model bundle.

    An --out that already holds a run is refused unless --overwrite (start fresh) or --resume (continue) is given.
    """
    from attnrec.experiments.run import RunConfig, run_experiment

    base: dict[str, Any] = {}
    if config is not None:
        base = RunConfig.from_toml(config).model_dump(exclude_unset=True)
    for key, value in {
        "model": model,
        "data": data,
        "train": train,
        "valid": valid,
        "test": test,
        "out": out,
        "overwrite": overwrite or None,
        "resume": resume or None,
    }.items():
        if value is not None:
            base[key] = value
    if split_method is not None or seed is not None:
        sp: dict[str, Any] = dict(base.get("split", {}))
        if split_method is not None:
            sp["method"] = split_method
        if seed is not None:
            sp["seed"] = seed
        base["split"] = sp
    base["model_params"] = {**base.get("model_params", {}), **_parse_sets(param, "--set")}
    tr = {**base.get("trainer", {}), **_parse_sets(trainer_set, "--trainer-set")}
    overrides: dict[str, Any] = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "device": device}
    tr.update({k: v for k, v in overrides.items() if v is not None})
    base["trainer"] = tr
    if "model" not in base:
        raise ConfigError("no model given: use --model NAME or a --config file with `model = ...`")
    cfg = RunConfig.parse(base, source=str(config) if config else "command line")
    result = run_experiment(cfg, progress=progress)
    m = result.metrics
    console.print(
        _metrics_table(f"{m['model']} on {m['data']['source']}", {"valid": m["valid"], "test": m["test"]})
    )
    t = m["timings"]
    console.print(f"fit {t['fit_s']:.2f}s, evaluation {t['eval_s']:.2f}s, total {t['total_s']:.2f}s")
    if result.out is not None:
        console.print(f"results in {result.out / 'metrics.json'}")


# ------------------------------------------------------------------------------------------------ evaluate
@app.command("evaluate")
def evaluate_cmd(
    model_dir: Annotated[Path, typer.Option(help="a model bundle (RUN/model)")],
    test: Annotated[Path, typer.Option(help="CSV/Parquet with user_id,item_id[,rating]")],
    exclude: Annotated[
        list[Path] | None, typer.Option(help="extra files whose pairs are masked when ranking")
    ] = None,
    k: Annotated[list[int] | None, typer.Option(help="cut-offs (repeatable)")] = None,
) -> None:
    """Evaluate a saved model on a file; unknown users/items are dropped and counted."""
    import scipy.sparse as sp

    from attnrec.data.splits import read_interactions_file
    from attnrec.data.table import Interactions
    from attnrec.serving.bundle import load_bundle

    model = load_bundle(model_dir)
    uv, iv = model._vocabs()
    data, dropped = Interactions.encode(read_interactions_file(test), uv, iv, unknown="drop")
    if len(data) == 0:
        raise ConfigError(f"{test}: no row has a user and item the model knows")
    mask = model.seen
    for path in exclude or []:
        extra, _ = Interactions.encode(read_interactions_file(path), uv, iv, unknown="drop")
        mask = extra.csr() if mask is None else mask + extra.csr()
    metrics = model.evaluate(
        data, exclude=mask if mask is not None else sp.csr_matrix((len(uv), len(iv))), ks=tuple(k or (10, 20))
    )
    console.print(_metrics_table(f"{model.name} on {test}", {"test": metrics}))
    if dropped:
        console.print(f"[yellow]{dropped} row(s) with unknown user or item were skipped[/]")


# ------------------------------------------------------------------------------------------------ recommend
@app.command("recommend")
def recommend_cmd(
    model_dir: Annotated[Path, typer.Option(help="a model bundle (RUN/model)")],
    users: Annotated[str | None, typer.Option(help="comma-separated external user ids")] = None,
    users_file: Annotated[Path | None, typer.Option(help="a file with one user id per line")] = None,
    k: int = 10,
    out: Annotated[Path | None, typer.Option(help="write recommendations to .csv or .parquet")] = None,
    include_seen: bool = False,
    query: Annotated[
        str | None,
        typer.Option(
            help='a text query, e.g. "a funny animated movie for kids" (models with text: hybrid_csa)'
        ),
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="with --query: the user asking (unknown ids are served as a new user)")
    ] = None,
    candidates: Annotated[
        int, typer.Option(help="with --query: rank the N items whose text best matches the query; 0 = all")
    ] = 100,
) -> None:
    """Top-k recommendations for given users, or for a text query (--query, optionally with --user), with titles
    when the bundle has item metadata."""
    from attnrec.serving.bundle import load_bundle, load_bundle_items

    if query is not None:
        if users or users_file:
            raise ConfigError("--query takes one optional --user, not --users/--users-file")
        model = load_bundle(model_dir)
        by_text = getattr(model, "recommend_by_text", None)
        if by_text is None:
            raise ConfigError(
                f"model {model.name!r} in {model_dir} does not take text queries (hybrid_csa does)"
            )
        recs = by_text(query, user=user, k=k, exclude_seen=not include_seen, candidates=candidates or None)
        if recs.height and bool(recs["new_user"][0]) and user is not None:
            console.print(f"user {user!r} is not in the model: served as a new user")
        _write_or_print(recs, out, f"top-{k} from {model.name} for {query!r}")
        return
    if user is not None:
        raise ConfigError("--user goes with --query; for user recommendations use --users")
    ids: list[str] = []
    if users:
        ids += [u.strip() for u in users.split(",") if u.strip()]
    if users_file is not None:
        ids += [line.strip() for line in users_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise ConfigError("no users given: use --users ID[,ID...] or --users-file FILE")
    model = load_bundle(model_dir)
    recs = model.recommend(ids, k=k, exclude_seen=not include_seen)
    items = load_bundle_items(model_dir)
    if items is not None and "title" in items.columns:
        recs = recs.join(items.select("item_id", "title"), on="item_id", how="left", maintain_order="left")
    _write_or_print(recs, out, f"top-{k} from {model.name}")


def _write_or_print(recs: Any, out: Path | None, title: str) -> None:
    if out is not None:
        if out.suffix == ".parquet":
            recs.write_parquet(out)
        else:
            recs.write_csv(out)
        console.print(f"{recs.height} recommendations written to {out}")
    else:
        _print_frame(recs, title)


def _print_frame(df: Any, title: str) -> None:
    table = Table(title=title)
    for col in df.columns:
        table.add_column(col)
    for row in df.iter_rows():
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


# ------------------------------------------------------------------------------------------------ demo
@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="where the demo's runs go")] = Path("runs/demo"),
    user: Annotated[str, typer.Option(help="whose recommendations to show")] = "1",
    progress: bool = True,
) -> None:
    """MovieLens-100k: fetch, train svd and lightgcn on one split, print metrics and one user's top-10."""
    from attnrec.experiments.demo import run_demo

    run_demo(
        out,
        user=user,
        console=console,
        progress=progress,
        print_frame=_print_frame,
        metrics_table=_metrics_table,
    )


def main() -> None:
    """Entry point: run the app, turning attnrec's own errors into one clear line (exit status 2)."""
    try:
        app()
    except AttnrecError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()

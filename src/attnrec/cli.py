"""The command line: parses, calls the library, prints. No logic lives here.

Errors that attnrec raises on purpose (bad data, bad config, unknown ids, missing extras, unwritable outputs) and
operating-system failures on the user's paths are printed as one clear ``error:`` line and exit with status 2
(:func:`attnrec.cli_common.run_app`); a bug keeps its traceback, and ``ATTNREC_DEBUG=1`` shows every traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from attnrec.cli_common import (
    DEFAULT_THREADS,
    CTRFormatOpt,
    RatingRangeOpt,
    SepOpt,
    ThreadsOpt,
    TrustBundleOpt,
    check_heldout_not_masked,
    check_output_file,
    output_path,
    print_frame,
    run_app,
    say_if_short,
    write_frame,
)
from attnrec.cli_common import ctr_rows as _ctr_rows
from attnrec.cli_common import metrics_table as _metrics_table
from attnrec.cli_common import parse_columns as _parse_columns
from attnrec.cli_common import parse_sets as _parse_sets
from attnrec.cli_common import quiet_progress as _quiet_progress
from attnrec.cli_common import set_threads as _set_threads
from attnrec.cli_data import data_app
from attnrec.cli_scale import tune_cmd
from attnrec.errors import ConfigError
from attnrec.serving.cli import serve_cmd

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="attnrec: attention-based recommendation — data, training, evaluation.",
)
app.add_typer(data_app, name="data")  # fetch, info, split, ingest (cli_data.py)
console = Console()


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


# ------------------------------------------------------------------------------------------------ train


@app.command("train")
def train_cmd(
    config: Annotated[Path | None, typer.Option(help="a TOML run file (flags below override it)")] = None,
    model: Annotated[
        str | None, typer.Option(help="model name (see `attnrec models`) or import path")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="registered dataset name or path (CTR models: MovieLens as CTR, label = rating >= 4)"
        ),
    ] = None,
    train: Annotated[
        Path | None, typer.Option(help="pre-split training file (CSV/Parquet; CTR: see --format)")
    ] = None,
    valid: Annotated[Path | None, typer.Option(help="pre-split validation file")] = None,
    test: Annotated[Path | None, typer.Option(help="pre-split test file")] = None,
    fmt: CTRFormatOpt = None,
    columns: Annotated[
        str | None,
        typer.Option(help="rename the file's columns, e.g. userId=user_id,movieId=item_id,rating=rating"),
    ] = None,
    items: Annotated[
        Path | None,
        typer.Option(
            help="item metadata CSV/Parquet (item_id, title, description, genres...): item text for "
            "models that read it (hybrid_csa); kept in the bundle for titles"
        ),
    ] = None,
    modalities: Annotated[
        str | None,
        typer.Option(
            help="item features of multimodal models: text,meta (from item metadata), copurchase (opt-in: "
            "Amazon also_buy/also_view lists, flagged leaky), NAME=FILE.npy"
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(parser=output_path, help="run directory: metrics.json, train_log.jsonl, model/"),
    ] = None,
    split_method: Annotated[
        str | None, typer.Option("--split", help="split method when --data is given")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="split seed")] = None,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    threads: ThreadsOpt = None,
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
    rating_range: RatingRangeOpt = None,
    on_bad_lines: Annotated[
        Literal["error", "skip"] | None,
        typer.Option(
            help="a malformed line (--data) or an out-of-range rating: 'error' stops; 'skip' drops and counts"
        ),
    ] = None,
    progress: bool = True,
    nproc: Annotated[int, typer.Option(help="data-parallel processes (DDP; docs/scaling.md)")] = 1,
) -> None:
    """Train a model, evaluate on validation and test, write metrics.json and a model bundle.

    Every registered model trains here: rating and top-K models on interactions, CTR models on rows.
    An --out that already holds a run is refused unless --overwrite (start fresh) or --resume (continue) is given.
    """
    from attnrec.data.table import parse_rating_range
    from attnrec.experiments.launch import run_distributed
    from attnrec.experiments.run import RunConfig

    if not progress:
        _quiet_progress()
    base: dict[str, Any] = {}
    if config is not None:
        base = RunConfig.from_toml(config).model_dump(exclude_unset=True)
    for key, value in {
        "model": model,
        "data": data,
        "train": train,
        "valid": valid,
        "test": test,
        "items": items,
        "modalities": modalities.split(",") if modalities else None,
        "out": out,
        "threads": threads,
        "overwrite": overwrite or None,
        "resume": resume or None,
        "rating_range": parse_rating_range(rating_range) if rating_range is not None else None,
        "on_bad_lines": on_bad_lines,
    }.items():
        if value is not None:
            base[key] = value
    base.setdefault("threads", DEFAULT_THREADS)
    if columns is not None:
        base["columns"] = {**base.get("columns", {}), **_parse_columns(columns)}
    if fmt is not None:
        base["ctr"] = {**base.get("ctr", {}), "format": fmt}
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
    result = run_distributed(cfg, nproc, progress=progress)  # nproc 1: run_experiment in this process
    m = result.metrics
    console.print(
        _metrics_table(f"{m['model']} on {m['data']['source']}", {"valid": m["valid"], "test": m["test"]})
    )
    t = m["timings"]
    console.print(
        f"fit {t['fit_s']:.2f}s ({m['fit']['epochs_run']} epochs, best {m['fit']['best_epoch']}), "
        f"evaluation {t['eval_s']:.2f}s, total {t['total_s']:.2f}s, {m['threads']} thread(s)"
    )
    if result.out is not None:
        console.print(f"results in {result.out / 'metrics.json'}", markup=False)


# ------------------------------------------------------------------------------------------------ evaluate
@app.command("evaluate")
def evaluate_cmd(
    model_dir: Annotated[Path, typer.Option(help="a model bundle (RUN/model)")],
    test: Annotated[
        Path, typer.Option(help="CSV/Parquet with user_id,item_id[,rating]; CTR bundles: rows in --format")
    ],
    exclude: Annotated[
        list[Path] | None,
        typer.Option(
            help="rankings: more files whose pairs are masked besides the training items (repeatable); "
            "a run's test numbers need its split's valid.csv here"
        ),
    ] = None,
    k: Annotated[
        list[int] | None, typer.Option(min=1, help="rankings: cut-offs (repeatable; default 10 and 20)")
    ] = None,
    fmt: CTRFormatOpt = None,
    sep: SepOpt = None,
    columns: Annotated[
        str | None, typer.Option(help="interaction files: rename the file's columns (as for train)")
    ] = None,
    threads: ThreadsOpt = None,
    trust_bundle: TrustBundleOpt = False,
    reliability: Annotated[
        Path | None,
        typer.Option(
            help="CTR bundles: write the reliability curve (raw and calibrated): .json data, or .png/.svg/.pdf "
            "plot (plots extra)"
        ),
    ] = None,
) -> None:
    """Evaluate a saved model on a file by its capability: ratings (RMSE/MAE/MSE, graded NDCG@10 per user),
    rankings (recall/NDCG@k over all items) or CTR rows (AUC/logloss/ECE, read as the run read them: its
    format, separator and label threshold; a calibrated bundle is reported calibrated and raw).
    Unknown users/items are dropped and counted.

    Rankings mask the model's training items, plus every --exclude file's pairs; the items masked are printed. A
    run masked train + valid when it scored its test split, so reproducing its test numbers from the exported
    split needs `--exclude valid.csv`.
    """
    from attnrec.cli_common import ctr_metric_rows, write_reliability
    from attnrec.evaluation.protocols import Rating, default_protocol, evaluate
    from attnrec.models.base import Recommender
    from attnrec.models.ctr.base import CTRRecommender
    from attnrec.serving.bundle import load_bundle

    _set_threads(threads)
    model = load_bundle(model_dir, trust_code=trust_bundle)
    if isinstance(model, CTRRecommender):
        unused = [flag for flag, v in (("--columns", columns), ("--exclude", exclude), ("--k", k)) if v]
        if unused:
            raise ConfigError(
                f"{', '.join(unused)}: model {model.name!r} scores CTR rows, read by its own feature encoder "
                "(AUC/logloss over rows): these apply to interaction files and rankings only"
            )
        rows, notes = _ctr_rows(model, model_dir, test, fmt, sep, need_label=True)
        console.print(_metrics_table(f"{model.name} on {test}", ctr_metric_rows(model, rows)))
        console.print(
            f"{len(rows)} rows" + (f"; {notes['skipped_rows']} skipped" if notes.get("skipped_rows") else "")
        )
        if reliability is not None:
            console.print(f"reliability curve in {write_reliability(model, rows, reliability)}", markup=False)
        return
    if reliability is not None:
        raise ConfigError(f"--reliability applies to CTR bundles; model {model.name!r} is not a CTR model")
    if fmt is not None or sep is not None:
        raise ConfigError(f"--format/--sep read CTR rows; model {model.name!r} reads interaction files")
    if not isinstance(model, Recommender):
        raise ConfigError(f"model {model.name!r} in {model_dir} declares no capability `evaluate` can use")
    import scipy.sparse as sp

    from attnrec.data.splits import read_interactions_file, read_interactions_with_lines
    from attnrec.data.table import Interactions
    from attnrec.experiments.seq_run import bundle_protocol  # sequential: per target domain, from a context

    protocol = default_protocol(model, tuple(k or (10, 20)))
    if isinstance(protocol, Rating) and (k or exclude):
        flags = " and ".join(f for f, v in (("--k", k), ("--exclude", exclude)) if v)
        raise ConfigError(
            f"{flags} does not apply: model {model.name!r} predicts ratings, evaluated by RMSE/MAE/MSE on "
            "every row and the graded NDCG@10 per user (SAFMR's eq. 16, cut-off fixed at 10; nothing masked)"
        )
    uv, iv = model._vocabs()
    rename = _parse_columns(columns)
    held, held_lines = read_interactions_with_lines(test, rename)
    # the run's rating scale, stored in the bundle: declared ones are enforced
    if isinstance(protocol, Rating):
        from attnrec.data.table import check_heldout_scale
        from attnrec.serving.bundle import bundle_extra

        scale = bundle_extra(model_dir).get("rating_range")
        held = check_heldout_scale(held, scale, source=str(test), lines=held_lines)
    data, dropped = Interactions.encode(held, uv, iv, unknown="drop")
    if len(data) == 0:
        raise ConfigError(f"{test}: no row has a user and item the model knows")
    mask = model.seen if model.seen is not None else sp.csr_matrix((len(uv), len(iv)))
    files = [read_interactions_file(path, rename) for path in exclude or []]
    extras = [Interactions.encode(f, uv, iv, unknown="drop")[0] for f in files]
    mask = sum((e.csr() for e in extras), mask)
    mask = sp.csr_matrix(mask)
    if not isinstance(protocol, Rating):
        check_heldout_not_masked(console, data, mask, test, exclude or [])
    metrics = evaluate(model, data, bundle_protocol(model, extras, tuple(k or ())) or protocol, exclude=mask)
    console.print(_metrics_table(f"{model.name} on {test}", {"test": metrics}))
    if not isinstance(protocol, Rating):
        console.print(
            "masked: training items"
            + "".join(f" + {path}" for path in exclude or [])
            + ("" if exclude else " (a run's test numbers also mask its valid split: --exclude valid.csv)"),
            markup=False,
        )
    if dropped:
        console.print(f"[yellow]{dropped} row(s) with unknown user or item were skipped[/]")


@app.command("predict")
def predict_cmd(
    model_dir: Annotated[
        Path, typer.Option(help="a model bundle (RUN/model): CTR (click probabilities) or rating (ratings)")
    ],
    data: Annotated[
        Path,
        typer.Option(
            help="CTR bundles: rows in --format (the label column may be absent); rating bundles: a CSV/Parquet "
            "of user_id,item_id pairs"
        ),
    ],
    fmt: CTRFormatOpt = None,
    sep: SepOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(parser=output_path, help="write the predictions to .csv or .parquet"),
    ] = None,
    threads: ThreadsOpt = None,
    trust_bundle: TrustBundleOpt = False,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="CTR bundles: the raw model's probabilities (column raw_probability), before the calibration "
            "fitted on validation that the bundle otherwise applies",
        ),
    ] = False,
) -> None:
    """Click probabilities of CTR rows from a CTR bundle (its own feature encoder reads the raw rows, as the run
    read them: its format, separator and label threshold unless --format/--sep say otherwise; calibrated by the
    bundle's temperature or Platt scaling when it has one, unless --raw); or the predicted
    rating of each (user_id, item_id) pair from a rating bundle, in the file's order: unknown users or items get no
    rating and a `cold_start` flag; the review models (deepconn, transnet, safmr) add `has_text` (false: the user's
    or item's training reviews hold no word, rated from the all-padding fallback)."""
    import polars as pl

    from attnrec.models.base import RatingPredictor, Recommender
    from attnrec.models.ctr.base import CTRRecommender
    from attnrec.serving.bundle import load_bundle

    _set_threads(threads)
    check_output_file(out)
    model = load_bundle(model_dir, trust_code=trust_bundle)
    if isinstance(model, RatingPredictor) and isinstance(model, Recommender):
        if fmt is not None or sep is not None:
            raise ConfigError(f"--format/--sep read CTR rows; model {model.name!r} reads a file of pairs")
        if raw:
            raise ConfigError(
                f"--raw applies to CTR bundles (uncalibrated probabilities); model {model.name!r} rates pairs"
            )
        from attnrec.data.splits import read_interactions_file
        from attnrec.serving.batch import predict_ratings

        preds = predict_ratings(model, read_interactions_file(data))
        _write_or_print(preds, out, f"predicted ratings from {model.name} for {data}", what="predictions")
        cold = preds["cold_start"].is_not_null().sum()
        blank = (~preds["has_text"]).sum() if "has_text" in preds.columns else 0
        if cold or blank:
            console.print(
                f"[yellow]of {preds.height} pairs: {cold} with an unknown user or item (no rating), {blank} rated "
                "from the all-padding fallback (has_text false: no training review text)[/]"
            )
        return
    if not isinstance(model, CTRRecommender):
        raise ConfigError(
            f"`attnrec predict` scores CTR rows or rating pairs; model {model.name!r} in {model_dir} does neither "
            "(use `attnrec recommend` or `attnrec evaluate`)"
        )
    rows, _ = _ctr_rows(model, model_dir, data, fmt, sep, need_label=False)
    probs = model.predict_proba(rows, calibrated=not raw)
    column, what = (
        ("raw_probability", "raw click probabilities") if raw else ("probability", "click probabilities")
    )
    frame = pl.DataFrame({"row": pl.Series(range(1, len(probs) + 1), dtype=pl.Int64), column: probs})
    _write_or_print(frame, out, f"{what} from {model.name} for {data}", what="predictions")


# ------------------------------------------------------------------------------------------------ recommend
@app.command("recommend")
def recommend_cmd(
    model_dir: Annotated[Path, typer.Option(help="a model bundle (RUN/model)")],
    users: Annotated[str | None, typer.Option(help="comma-separated external user ids")] = None,
    users_file: Annotated[Path | None, typer.Option(help="a file with one user id per line")] = None,
    history: Annotated[
        str | None,
        typer.Option(help="a new user's recent items, comma-separated item ids (models taking histories)"),
    ] = None,
    k: Annotated[int, typer.Option(min=1, help="how many items per user")] = 10,
    domain: Annotated[
        str | None,
        typer.Option(help="the target domain: recommend only its items (cross-domain models: sasrec, gca)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(parser=output_path, help="write recommendations to .csv or .parquet")
    ] = None,
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
        int | None,
        typer.Option(
            min=0,
            help="with --query: rank the N items whose text best matches the query (default: sized to the "
            "catalogue, max(10*k, min(10% of the items, 1000))); 0 = all",
        ),
    ] = None,
    text_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="with --query: the weight w of text relevance in the ranking, w*z(relevance) + "
            "(1-w)*z(predicted rating) (default: the bundle's, chosen on validation); 1 = by text only",
        ),
    ] = None,
    all_users: Annotated[
        bool,
        typer.Option(
            "--all-users",
            help="every known user, streamed in batches to --out (.parquet or .csv), written atomically",
        ),
    ] = False,
    threads: ThreadsOpt = None,
    trust_bundle: TrustBundleOpt = False,
    progress: bool = True,
) -> None:
    """Top-k items for known users (--users, or --all-users into a file), for a new user's recent items
    (--history) or for a text query (--query, optionally with --user), with titles when the bundle has item
    metadata."""
    from attnrec.models.base import Query, Recommender
    from attnrec.models.ctr.base import CTRRecommender
    from attnrec.serving.bundle import load_bundle, load_bundle_items

    if not progress:
        _quiet_progress()
    _set_threads(threads)
    given = [
        n
        for n, v in (
            ("--users/--users-file", users or users_file),
            ("--history", history),
            ("--query", query),
            ("--all-users", all_users),
        )
        if v
    ]
    if len(given) > 1:
        raise ConfigError(f"give one of --users, --history, --query, --all-users (got {' and '.join(given)})")
    if all_users and out is None:
        raise ConfigError("--all-users writes a file: give --out recs.parquet (or .csv)")
    if user is not None and query is None:
        raise ConfigError("--user goes with --query; for user recommendations use --users")
    if candidates is not None and query is None:
        raise ConfigError("--candidates goes with --query (it picks the items a text query ranks)")
    if text_weight is not None and query is None:
        raise ConfigError(
            "--text-weight goes with --query (it weighs a text query's relevance in the ranking)"
        )
    if candidates and candidates < k:
        raise ConfigError(
            f"--candidates {candidates} is fewer than --k {k}: at most {candidates} items could be ranked "
            f"(give --candidates >= {k}, or 0 for all items)"
        )
    check_output_file(out)
    model = load_bundle(model_dir, trust_code=trust_bundle)
    if isinstance(model, CTRRecommender):
        raise ConfigError(
            f"model {model.name!r} in {model_dir} scores CTR rows, not users or items: "
            f"use `attnrec predict --model-dir {model_dir} --data FILE --format criteo|avazu|csv|movielens`"
        )
    if not isinstance(model, Recommender):
        raise ConfigError(f"model {model.name!r} in {model_dir} does not recommend items")
    if domain is not None and "domain" not in model.query_inputs:
        raise ConfigError(
            f"--domain: model {model.name!r} in {model_dir} has no domains "
            f"(it takes: {', '.join(sorted(model.query_inputs))}; sasrec and gca do)"
        )
    if domain is not None and (all_users or query is not None):
        raise ConfigError("--domain goes with --users or --history")
    if all_users:
        from attnrec.serving.batch import recommend_all_users

        assert out is not None
        rep = recommend_all_users(
            model,
            out,
            k=k,
            exclude_seen=not include_seen,
            items=load_bundle_items(model_dir, trust_code=trust_bundle),
        )
        console.print(f"{rep.rows} recommendations for {rep.users} users written to {out}", markup=False)
        say_if_short(console, rep.rows, k, rep.users)
        return
    if query is not None:
        if "text" not in model.query_inputs:
            raise ConfigError(
                f"--query: model {model.name!r} in {model_dir} does not take text queries "
                f"(it takes: {', '.join(sorted(model.query_inputs))}; hybrid_csa does)"
            )
        from attnrec.models.rating.hybrid_csa.queries import TextQueries

        if isinstance(model, TextQueries):  # retrieve-then-rank with attention shares
            recs = model.recommend_by_text(
                query,
                user=user,
                k=k,
                exclude_seen=not include_seen,
                candidates="auto" if candidates is None else candidates or None,
                text_weight=text_weight,
            )
            if recs.height and bool(recs["new_user"][0]) and user is not None:
                console.print(f"user {user!r} is not in the model: served as a new user", markup=False)
        else:
            if text_weight is not None:
                raise ConfigError(f"--text-weight: model {model.name!r} ranks text queries by its own score")
            uv, iv = model._vocabs()
            q = Query.from_ids(uv, iv, user_ids=[user] if user else None, text=[query], unknown_users="new")
            recs = model.recommend(q, k=k, exclude_seen=not include_seen)
        say_if_short(console, recs.height, k, 1)
        _write_or_print(recs, out, f"top-{k} from {model.name} for {query!r}")
        return
    if history is not None:
        if "history" not in model.query_inputs:
            raise ConfigError(
                f"--history: model {model.name!r} in {model_dir} does not take a history in a query "
                f"(it takes: {', '.join(sorted(model.query_inputs))})"
            )
        ids = [i.strip() for i in history.split(",") if i.strip()]
        if not ids:
            raise ConfigError("--history: no item ids given (expected ITEM[,ITEM...])")
        uv, iv = model._vocabs()
        q = Query.from_ids(uv, iv, history_ids=[ids], exclude="history", domain=domain)
        recs = model.recommend(q, k=k, exclude_seen=not include_seen)
        title = f"top-{k} from {model.name} for a new user who took {', '.join(ids)}"
        say_if_short(console, recs.height, k, 1)
    else:
        ids = [u.strip() for u in (users or "").split(",") if u.strip()]
        if users_file is not None:
            from attnrec.data.readers.files import read_id_list

            ids += read_id_list(users_file, what="user id")
        if not ids:
            raise ConfigError(
                "no users given: use --users ID[,ID...], --users-file FILE or --history ITEM[,ITEM...]"
            )
        uv, iv = model._vocabs()
        recs = model.recommend(
            Query.from_ids(uv, iv, user_ids=ids, domain=domain), k=k, exclude_seen=not include_seen
        )
        title = f"top-{k} from {model.name}" + (f" in domain {domain}" if domain else "")
        say_if_short(console, recs.height, k, len(ids))
    items = load_bundle_items(model_dir, trust_code=trust_bundle)
    if items is not None and "title" in items.columns:
        recs = recs.join(items.select("item_id", "title"), on="item_id", how="left", maintain_order="left")
    _write_or_print(recs, out, title)


def _write_or_print(recs: Any, out: Path | None, title: str, *, what: str = "recommendations") -> None:
    if out is not None:
        write_frame(recs, out)
        console.print(f"{recs.height} {what} written to {out}", markup=False)
    else:
        _print_frame(recs, title)


def _print_frame(df: Any, title: str) -> None:
    """A result frame on this module's console (tests swap the console)."""
    print_frame(console, df, title)


# the command's body is in serving/cli.py (uvicorn and the app are imported only when it runs)
app.command("serve")(serve_cmd)
app.command("tune")(tune_cmd)  # the body is in cli_scale.py (Optuna is imported only when it runs)


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(parser=output_path, help="where the demo's runs go")] = Path(
        "runs/demo"
    ),
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
    """Entry point: run the app; attnrec's own errors and OS failures on the user's paths print one ``error:`` line
    (exit status 2), Ctrl-C one line (130); a bug shows its traceback (every error does with ATTNREC_DEBUG=1)."""
    run_app(app)


if __name__ == "__main__":
    main()

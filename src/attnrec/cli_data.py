"""``attnrec data``: fetch, inspect, split and ingest datasets (the commands; the logic is in :mod:`attnrec.data`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from attnrec.cli_common import OnBadLines, RatingRangeOpt, output_path
from attnrec.cli_scale import ingest_cmd
from attnrec.errors import ConfigError
from attnrec.paths import check_output_dir, staged_files

data_app = typer.Typer(no_args_is_help=True, help="Fetch, inspect and split datasets.")
data_app.command("ingest")(ingest_cmd)  # streaming Amazon dumps -> Parquet (cli_scale.py)
console = Console()


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
    console.print(
        f"[green]{escape(name)}[/] ready at {escape(str(res.path))} (source: {escape(str(res.source))})"
    )


@data_app.command("info")
def data_info(
    source: Annotated[str, typer.Argument(help="a registered dataset name or a path")],
    on_bad_lines: OnBadLines = "error",
) -> None:
    """Counts, density, rating values and time range of a dataset."""
    from attnrec.data.registry import load_dataset

    ds = load_dataset(source, on_bad_lines=on_bad_lines)
    table = Table(title=escape(f"dataset {ds.name}"), show_header=False)
    for k, v in ds.info().items():
        table.add_row(escape(k), f"{v:.6f}" if isinstance(v, float) else escape(str(v)))
    for k, v in ds.notes.items():
        table.add_row(escape(k), escape(str(v)))
    console.print(table)


@data_app.command("split")
def data_split(
    source: Annotated[str, typer.Argument(help="a registered dataset name or a path")],
    out: Annotated[
        Path,
        typer.Option(parser=output_path, help="directory for train.csv, valid.csv, test.csv and split.json"),
    ],
    method: Annotated[
        str, typer.Option(help="random | random_per_user | temporal | temporal_per_user | leave_last_out")
    ] = "random",
    ratios: Annotated[str, typer.Option(help="train,valid,test shares")] = "0.8,0.1,0.1",
    seed: int = 2026,
    user_k: Annotated[int, typer.Option(help="k-core: minimum interactions per user")] = 0,
    item_k: Annotated[int, typer.Option(help="k-core: minimum interactions per item")] = 0,
    dedup: Annotated[
        str,
        typer.Option(
            help="repeated (user, item) pairs: none keeps every row (all copies of a pair in one part) | "
            "last | first | mean keep one row per pair"
        ),
    ] = "none",
    on_bad_lines: OnBadLines = "error",
    rating_range: RatingRangeOpt = None,
) -> None:
    """Split a dataset and export it with the original ids, so other libraries run on exactly the same split."""
    from attnrec.data import filters
    from attnrec.data.readers.tabular import skipped_summary
    from attnrec.data.registry import load_dataset
    from attnrec.data.splits import export_split, split
    from attnrec.data.table import Dataset

    check_output_dir(out)  # before the dataset is read: a file at --out fails at once
    if dedup not in ("none", "last", "first", "mean"):
        raise ConfigError(f"--dedup {dedup!r}: expected none, last, first or mean")
    written = [out / name for name in ("train.csv", "valid.csv", "test.csv", "split.json")]
    if Path(source).exists() and any(p.exists() and p.samefile(source) for p in written):
        # the split would be written over the file it is read from (say a split's train.csv split into its folder)
        raise ConfigError(
            f"--out {out}: the split would overwrite its own input {source}; give another folder"
        )
    ds = load_dataset(source, on_bad_lines=on_bad_lines)
    df = ds.interactions
    scale: dict[str, Any] | None = None
    if rating_range is not None:  # declared: every rating checked, skipped rows counted in split.json
        from attnrec.data.table import check_rating_range, parse_rating_range

        lo_hi = parse_rating_range(rating_range)
        source_name = ds.source or ds.name
        df, off = check_rating_range(df, lo_hi, source=source_name, on_bad_lines=on_bad_lines, lines=ds.lines)
        scale = {"range": list(lo_hi), "source": "declared", "skipped": {"input": off} if off else {}}
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
    result = split(Dataset(ds.name, df, source=ds.source), method, **kw)  # errors name the file
    if scale is not None:
        result.report["rating_range"] = scale
    skipped = skipped_summary(ds.notes)
    if skipped is not None:
        result.report["skipped_bad_lines"] = skipped
    with staged_files(out, last="split.json", what="split") as staging:  # each file whole, split.json last
        export_split(result, staging)
    if skipped is not None:
        console.print(
            f"skipped {skipped['count']} malformed row(s) of {skipped['file']} "
            f"(first lines: {', '.join(str(n) for n in skipped['first_lines'])}); recorded in split.json",
            markup=False,
        )
    sizes = result.report.get("sizes", {})
    console.print(
        f"[green]split written to {escape(str(out))}[/]: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
    )
    if result.report.get("dropped"):
        console.print(
            f"dropped from valid/test (user or item unseen in train): {result.report['dropped']}",
            markup=False,
        )

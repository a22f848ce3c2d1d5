"""The cross-domain sequential study of issue 16: sasrec (A only, B only, mixed), gca variants and their
parameter-matched baselines, over seeds; per-domain tables, |cos(X, X')| against NDCG@10, NDCG@10 against
parameter count, and the ABXI peer rows.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cdsr_study.py --data abxi-food-kitchen \
        --out bench_results/cdsr/study [--seeds 0,1,2] [--variants sasrec-mixed,gca[1]-sigmoid-ln,...] \
        [--config benchmarks/configs/cdsr/gca-recbole.toml] [--epochs 200] [--patience 10] [--set dim=64] \
        [--abxi bench_results/cdsr/abxi_afk_s3407.jsonl] \
        [--recbole bench_results/cdsr/recbole_sasrec.jsonl] [--dry-run | --report | --import-run NAME=DIR ...
        | --import-table CSV]

Every run goes through the library's own run path (``attnrec.experiments.run.run_experiment``: the dataset,
leave-one-out split, fit with early stopping on validation NDCG@10, test read once at the best epoch, per-domain
sampled metrics), one thread. Resumable: each finished run appends one JSON line to ``OUT/results.jsonl`` and is
skipped next time (key = variant + seed + settings); an interrupted run starts over. ``--report`` (also done after
the runs) writes ``OUT/report.md`` (a table per domain, the correlations), ``OUT/cos_vs_ndcg.png``,
``OUT/ndcg_vs_params.png`` and ``OUT/curves.png`` (validation NDCG@10 per epoch and per training second, ABXI's
beside ours).

Runs whose record files were lost can rejoin from the table they were published in: ``--import-table CSV`` adds
each row as a record of the command's settings, with the run key the command gives that run (so a resumed study
does not run it again) and its ``source``. ``OUT/results.jsonl`` is all the report reads: the study's folder under
``benchmarks/cdsr_results/`` keeps it beside the report, so the report can be rebuilt and the study resumed on
another machine (under 10 KB a run).

The grid (``--n-blocks`` blocks, default 3): ``sasrec-A``, ``sasrec-B``, ``sasrec-mixed``; ``gca[P]-ACT-LN`` for
P each block alone and all blocks ([0], [1], [2], [0,1,2] for 3 blocks; [0], [1], [0,1] for 2), ACT in
sigmoid/tanh, LN in ln/noln (the issue's positions x activation x LayerNorm); ``matched-gca[P]``: the gca
backbone without modules (``positions=[]``), widened (d, then the feed-forward) to the parameter count of
``gca[P]-sigmoid-ln`` within 2% (``attnrec.models.sequential.params.matched_baseline``; the modules' count hardly
depends on ACT or LN, and not at all on P beyond the number of blocks in it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cdsr_report as rep  # noqa: E402 - the benchmark folder is no package
from _record import git_state  # noqa: E402

MATCH_TOLERANCE = 0.02


@dataclass(frozen=True)
class Variant:
    """One row of the study: a registered model and its parameters (on top of the shared backbone settings)."""

    name: str
    family: str  # sasrec / gca / matched
    model: str
    params: dict[str, Any] = field(default_factory=dict)


def _pos_name(p: Sequence[int]) -> str:
    return "gca[" + ",".join(str(i) for i in p) + "]"


def position_sets(n_blocks: int) -> list[list[int]]:
    """The insertion positions of the grid: after each block alone, and after every block (the issue's GCA[0],
    GCA[1], GCA[2], GCA[0,1,2] for 3 blocks; GCA[0], GCA[1], GCA[0,1] for 2; one block has one position)."""
    if n_blocks < 1:
        raise SystemExit(f"--n-blocks must be >= 1, got {n_blocks}")
    out = [[i] for i in range(n_blocks)]
    return out + [list(range(n_blocks))] if n_blocks > 1 else out


def grid(n_blocks: int = 3) -> list[Variant]:
    """Every variant of the study before parameter matching (matched baselines are added by
    :func:`matched_variant`, which needs the data's item count)."""
    out = [
        Variant("sasrec-A", "sasrec", "sasrec", {"domain": "A"}),
        Variant("sasrec-B", "sasrec", "sasrec", {"domain": "B"}),
        Variant("sasrec-mixed", "sasrec", "sasrec", {}),
    ]
    for p in position_sets(n_blocks):
        for act in ("sigmoid", "tanh"):
            for ln in (True, False):
                name = f"{_pos_name(p)}-{act}-{'ln' if ln else 'noln'}"
                out.append(
                    Variant(name, "gca", "gca", {"positions": list(p), "gate_act": act, "layer_norm": ln})
                )
    return out


def matched_variant(target: Variant, backbone: dict[str, Any], n_items: int) -> tuple[Variant, int, int]:
    """The parameter-matched baseline of ``target`` (a gca variant), from the library's
    :func:`~attnrec.models.sequential.params.matched_baseline`: the same backbone with no GCA module, widened
    until its parameter count is within 2% of ``target``'s. Returns ``(variant, its count, the target's count)``."""
    from attnrec.models.sequential.params import matched_baseline

    # the utility's own rule (docs/models/gca.md): d raised to the closest count, then the feed-forward width
    # solved for to close the rest; it refuses a gap beyond the tolerance
    m = matched_baseline({**backbone, **target.params}, n_items, tolerance=MATCH_TOLERANCE)
    name = "matched-" + target.name.split("-")[0]
    config = {
        k: v
        for k, v in m["config"].items()
        if k not in ("gate_act", "layer_norm", "gate_form", "gate_hidden")
    }
    return Variant(name, "matched", target.model, config), int(m["params"]), int(m["target"])


def matched_variants(
    variants: Sequence[Variant], backbone: dict[str, Any], n_items: int
) -> list[tuple[Variant, int, int, str]]:
    """One parameter-matched baseline per distinct module count among the grid's gca variants (``gca[P]-sigmoid-ln``;
    one module pair costs the same at any block, so gca[0], gca[1] and gca[2] share one baseline, named after the
    first of them other than gca[0] — ``matched-gca[1]``, as the earlier records are — and ``matched-gca[0]`` for one
    block). Returns ``(variant, its count, the target's count, the target's name)`` each."""
    targets = [
        v
        for v in variants
        if v.family == "gca" and v.params["gate_act"] == "sigmoid" and v.params["layer_norm"]
    ]
    out: list[tuple[Variant, int, int, str]] = []
    seen: set[str] = set()
    for v in sorted(targets, key=lambda v: v.params["positions"] == [0]):
        mv, got, goal = matched_variant(v, backbone, n_items)
        if json.dumps(mv.params, sort_keys=True) not in seen:
            seen.add(json.dumps(mv.params, sort_keys=True))
            out.append((mv, got, goal, v.name))
    return out


def run_key(variant: Variant, seed: int, backbone: dict[str, Any], trainer: dict[str, Any], data: str) -> str:
    """A stable key of one run: variant, seed, every setting and the data (a changed setting is a new run)."""
    blob = json.dumps(
        {"v": variant.name, "p": variant.params, "s": seed, "b": backbone, "t": trainer, "d": data},
        sort_keys=True,
    )
    return f"{variant.name}|s{seed}|{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def domain_metrics(flat: dict[str, Any], only: str | None = None) -> dict[str, dict[str, float]]:
    """Per-domain sampled metrics from the run's flat metric names (``"A/ndcg@10"``; ``"A/full/ndcg@10"`` is the
    full ranking within A, kept as ``full/ndcg@10``); names without a domain and the cross-domain means
    (``"full/..."``) are left out; ``only``: keep that domain alone."""
    out: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        if "/" not in key or not isinstance(value, int | float):
            continue
        dom, metric = key.split("/", 1)
        if dom == "full" or (only is not None and dom != only):
            continue
        out.setdefault(dom, {})[metric.replace("hit@", "hr@")] = float(value)
    return out


def cos_by_domain(best_valid: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """``(per module, per query domain mean)`` |cos(X, X')| from the best epoch's validation row, whose keys are
    ``abs_cos[A<-B@1]`` (query domain A, key domain B, after block 1)."""
    modules = {k[len("abs_cos[") : -1]: float(v) for k, v in best_valid.items() if k.startswith("abs_cos[")}
    per: dict[str, list[float]] = {}
    for name, value in modules.items():
        per.setdefault(name.split("<-", 1)[0], []).append(value)
    return modules, {d: sum(v) / len(v) for d, v in per.items()}


def curve_of(history: Sequence[dict[str, Any]], only: str | None = None) -> list[dict[str, Any]]:
    """Per-epoch validation NDCG@10 per domain (``only`` that one) and cumulative training seconds from a fit's
    history rows."""
    out, elapsed = [], 0.0
    for row in history:
        elapsed += float(row.get("seconds", 0.0))
        valid = {k[len("valid_") :]: v for k, v in row.items() if k.startswith("valid_")}
        per = domain_metrics(valid, only)
        out.append(
            {
                "epoch": int(row["epoch"]),
                "train_s_cum": elapsed,
                "valid": {d: m["ndcg@10"] for d, m in per.items() if "ndcg@10" in m},
            }
        )
        cos = cos_by_domain(valid)[1]
        if cos:  # gca: the epoch's validation |cos(X, X')| per query domain (the within-run trajectory)
            out[-1]["cos"] = cos
    return out


def fit_fields(metrics: dict[str, Any], only: str | None) -> dict[str, Any]:
    """The record fields read off a run's metrics (``run_experiment``'s ``metrics``, the CLI's ``metrics.json``):
    per-domain valid/test metrics (``only``: that domain alone), |cos| at the best epoch, epochs, median training
    seconds per epoch, fit seconds and the per-epoch curve."""
    fit = metrics["fit"]
    modules, cos = cos_by_domain(fit.get("best_valid", {}))
    history = fit.get("history", [])
    secs = sorted(float(r["seconds"]) for r in history if "seconds" in r)
    return {
        "valid": domain_metrics(metrics["valid"], only),
        "test": domain_metrics(metrics["test"], only),
        "cos": cos,
        "cos_modules": modules,
        "best_epoch": fit.get("best_epoch"),
        "epochs_run": fit.get("epochs_run"),
        "s_per_epoch": secs[len(secs) // 2] if secs else None,
        "fit_s": metrics["timings"]["fit_s"],
        "curve": curve_of(history, only),
    }


def run_one(
    variant: Variant, seed: int, data: str, backbone: dict[str, Any], trainer: dict[str, Any], threads: int
) -> dict[str, Any]:
    """Fit and evaluate one run through ``run_experiment`` (no bundle written); returns its study record."""
    from attnrec.experiments.config import RunConfig, SplitSpec
    from attnrec.experiments.run import run_experiment

    params = {**backbone, **variant.params, "seed": seed}
    only = variant.params.get("domain")  # a single-domain sasrec is selected and reported on its domain only
    if only is not None:
        trainer = {"valid_metric": f"{only}/ndcg@10", **trainer}
    cfg = RunConfig(
        model=variant.model,
        data=data,
        split=SplitSpec(method="leave_last_out"),
        model_params=params,
        trainer=trainer,
        threads=threads,
        save_model=False,
    )
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    res = run_experiment(cfg, progress=False)
    wall = time.perf_counter() - t0
    module = res.model.module
    return {
        "variant": variant.name,
        "family": variant.family,
        "model": variant.model,
        "params": params,
        "seed": seed,
        "data": data,
        "n_params": int(sum(p.numel() for p in module.parameters())) if module is not None else None,
        **fit_fields(res.metrics, only),
        "wall_s": wall,
        "threads": res.metrics["threads"],
        "trainer": trainer,
        "loadavg_before": load_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def family_of(model: str, config: dict[str, Any]) -> str:
    """The study family of a run's model and config: ``sasrec``; ``gca`` with modules; ``matched`` for the gca
    backbone without modules (``positions=[]``, the parameter-matched baseline's form)."""
    if model == "gca":
        return "gca" if config.get("positions", [1]) else "matched"
    return model


def import_run(name: str, run_dir: Path) -> dict[str, Any]:
    """A study record from a finished ``attnrec train --out RUN_DIR`` folder (its ``metrics.json``), named
    ``name``, so runs made by the CLI join the study's tables and plots. Fields the CLI does not record (the
    load average) are None; the parameter count is recomputed from the stored config
    (:func:`attnrec.models.sequential.params.count_parameters`, the same count as the fitted module's)."""
    from attnrec.models.sequential.params import count_parameters

    path = run_dir / "metrics.json"
    if not path.exists():
        raise SystemExit(f"--import-run {name}={run_dir}: no metrics.json there (the run did not finish)")
    m = json.loads(path.read_text())
    model, config = m["model"], dict(m["config"])
    trainer = {k: m["trainer"][k] for k in ("epochs", "patience", "lr", "batch_size") if k in m["trainer"]}
    blob = json.dumps({"dir": str(run_dir.resolve()), "fit_s": m["timings"]["fit_s"]}, sort_keys=True)
    return {
        "key": f"import|{name}|{hashlib.sha256(blob.encode()).hexdigest()[:10]}",
        "variant": name,
        "family": family_of(model, config),
        "model": model,
        "params": config,
        "seed": m.get("seed", config.get("seed")),
        "data": m["run"]["data"],
        "n_params": count_parameters(model, config, int(m["data"]["items"])),
        **fit_fields(m, config.get("domain")),
        "threads": m.get("threads"),
        "trainer": trainer,
        "loadavg_before": None,
        "source": str(run_dir.resolve()),
    }


def write_report(out: Path, abxi_path: Path | None, recbole_path: Path | None = None) -> str:
    """``report.md`` and the plots from ``out/results.jsonl`` (and the ABXI runner's lines, and
    ``cdsr_peer_recbole.py``'s records as single-domain peer rows); returns the text."""
    records = [r for r in rep.read_jsonl(out / "results.jsonl") if "variant" in r]
    abxi = rep.abxi_summary(rep.read_jsonl(abxi_path)) if abxi_path is not None else None
    rows = list(records)
    for r in rep.read_jsonl(recbole_path) if recbole_path is not None else []:
        rows.append(
            {
                "variant": f"RecBole SASRec {r['domain']} only (peer, {r['epochs_run']} ep)",
                "family": "peer",
                "seed": None,
                "n_params": r["n_params"],
                "test": {r["domain"]: r["test"]},
                "s_per_epoch": r["s_per_epoch"],
            }
        )
    if abxi is not None:
        rows.append(
            {
                "variant": f"ABXI peer ({abxi['epochs']} ep, ABXI-selected ep {abxi['selected_epoch']})",
                "family": "peer",
                "seed": None,
                "n_params": abxi["n_params"],
                "test": abxi["test"],
                "s_per_epoch": abxi["s_per_epoch"],
            }
        )
    parts = [f"# CDSR study ({len(records)} runs)\n"]
    for dom in rep.domains_of(rows):
        parts += [f"## Domain {dom} (test, mean ± std over seeds)\n", rep.domain_table(rows, dom), ""]
    for gca, matched in rep.matched_pairs(records):
        parts += [f"## {gca} against its parameter-matched baseline (test NDCG@10 per seed)\n"]
        parts += [rep.paired_table(records, gca, matched), ""]
    table, most, compared = rep.matched_summary(records)
    if compared:
        parts += [
            "## Every gca variant against the matched baseline of its module count (test NDCG@10)\n",
            table,
        ]
        parts += [f"\n{most} of {compared} gca variants ahead on every domain in most of their seeds.\n"]
    ranked = rep.best_by_validation(records)
    if ranked:
        parts.append("## Best by validation (NDCG@10, mean over the domains, then over seeds)\n")
        parts += [
            f"{i}. {v}: {m:.4f} ({n} seed{'s' * (n != 1)})" for i, (v, m, n) in enumerate(ranked, 1)
        ] + [""]
    if records:
        rep.plot_cos_scatter(records, out / "cos_vs_ndcg.png")
        rep.plot_params(rows, out / "ndcg_vs_params.png")
        parts.append("## |cos(X, X')| vs test NDCG@10 (gca runs; all runs, and per epoch cap)\n")
        for dom, groups in rep.cos_correlations(records).items():
            for group, c in groups.items():
                if math.isnan(c["pearson"]):
                    parts.append(
                        f"- domain {dom}, {group}: n={c['n']}, too few runs (or no spread) for a correlation"
                    )
                    continue
                parts.append(
                    f"- domain {dom}, {group}: n={c['n']}, Pearson {c['pearson']:.3f} (p={c['pearson_p']:.3g}), "
                    f"Spearman {c['spearman']:.3f} (p={c['spearman_p']:.3g})"
                )
        parts.append("")
        if rep.plot_cos_trajectories(records, out / "cos_trajectories.png"):
            parts.append(
                "Within-run trajectories (validation |cos| vs validation NDCG@10 per epoch): `cos_trajectories.png`.\n"
            )
    ours = {f"{r['variant']} s{r['seed']}": r["curve"] for r in records if r.get("curve")}
    if ours or abxi is not None:
        rep.plot_curves(abxi, ours, out / "curves.png")
    if abxi is not None and records:
        last = abxi["curve"][-1]
        e_abxi, s_abxi = last["epoch"], last["train_s_cum"]
        parts.append("## Equal-epoch / equal-wall-time (validation-selected test NDCG@10)\n")
        parts.append(
            f"ABXI (DiMarzioBian/ABXI at {abxi['commit']}, {abxi['n_params']:,} parameters, {abxi['threads']} "
            f"thread(s)): `{abxi['command']}`"
            + (f"; transcribed from {abxi['transcribed_from']}" if abxi.get("transcribed_from") else "")
            + f". Its run ended at epoch {e_abxi} ({s_abxi:.0f} training s). Our test is read once, at the best "
            "epoch, so the comparison at ABXI's last epoch is on validation NDCG@10 (best so far).\n"
        )
        parts.append(
            f"| run | domain | ours | ABXI at same epoch | ABXI at same training seconds | valid within {e_abxi} "
            "epochs: ours / ABXI |"
        )
        parts.append("|---|---|---|---|---|---|")
        fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
        for r in records:
            if not r.get("curve"):
                continue
            ep, secs = r["curve"][-1]["epoch"], r["curve"][-1]["train_s_cum"]
            for dom, m in sorted(r["test"].items()):
                a_ep = rep.value_at(abxi["curve"], "test", dom, epoch=ep)
                a_t = rep.value_at(abxi["curve"], "test", dom, seconds=secs)
                o_v = rep.value_at(r["curve"], "valid", dom, epoch=e_abxi)
                a_v = rep.value_at(abxi["curve"], "valid", dom, epoch=e_abxi)
                parts.append(
                    f"| {r['variant']} s{r['seed']} ({ep} ep, {secs:.0f} s) | {dom} | {m['ndcg@10']:.4f} | "
                    f"{fmt(a_ep)} | {fmt(a_t)} | {fmt(o_v)} / {fmt(a_v)} |"
                )
        parts.append("")
    text = "\n".join(parts)
    (out / "report.md").write_text(text)
    return text


#: what a run file may give the study's trainer (the rest of its trainer table is the variants' or the run's)
STUDY_TRAINER_KEYS = ("epochs", "patience", "lr", "batch_size")


#: model settings the study's variants set themselves (a run file's values for them are replaced)
VARIANT_KEYS = ("positions", "gate_act", "layer_norm", "domain")


def study_settings(path: Path) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """``(data, backbone, trainer)`` of a run file for the study, after validating the file against its model's
    config and the trainer's (a typo is an error, not a silently dropped key): its ``data``; its model settings
    that are the backbone's (:class:`SequentialConfig` fields, as written, so a run key equals the flag form's);
    its ``epochs``/``patience``/``lr``/``batch_size``. What the study does not take from the file is said."""
    from pydantic import ValidationError

    from attnrec.errors import AttnrecError
    from attnrec.experiments.config import RunConfig
    from attnrec.models.base import get_model_class
    from attnrec.models.sequential.base import SequentialConfig
    from attnrec.training.trainer import TrainerConfig

    try:
        cfg = RunConfig.from_toml(path)
        if cfg.model not in ("sasrec", "gca"):
            raise SystemExit(f"--config {path}: model {cfg.model!r}: the study runs sasrec and gca")
        cls = get_model_class(cfg.model)
        cls.config_class.parse(cfg.model_params, source=f"{path} [model_params]")
        TrainerConfig(**{**cls.default_trainer, **cfg.trainer})
    except AttnrecError as exc:
        raise SystemExit(f"--config: {exc}") from None
    except ValidationError as exc:
        raise SystemExit(f"--config {path} [trainer]: {exc}") from None
    backbone_keys = set(SequentialConfig.model_fields) - {*VARIANT_KEYS, "seed"}
    backbone = {k: v for k, v in cfg.model_params.items() if k in backbone_keys}
    trainer = {k: v for k, v in cfg.trainer.items() if k in STUDY_TRAINER_KEYS}
    by_variants = sorted(set(cfg.model_params) & set(VARIANT_KEYS))
    unused = sorted(set(cfg.model_params) - set(backbone) - set(VARIANT_KEYS))
    unused += [f"trainer.{k}" for k in sorted(set(cfg.trainer) - set(trainer))]
    if by_variants:
        print(f"--config {path}: set by each variant instead: {', '.join(by_variants)}", flush=True)
    if unused:
        print(
            f"--config {path}: not used by the study (model defaults, --seeds): {', '.join(unused)}",
            flush=True,
        )
    return cfg.data, backbone, trainer


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _n_items(data: str) -> int:
    """The size of the run's item vocabulary: the whole catalogue (the dataset's item table and every item of its
    interactions), as the sequential run path builds it."""
    import polars as pl

    from attnrec.data.registry import load_dataset

    ds = load_dataset(data)
    ids = [ds.interactions["item_id"].cast(pl.String)]
    if ds.items is not None and "item_id" in ds.items.columns:
        ids.append(ds.items["item_id"].cast(pl.String))
    return int(pl.concat(ids).n_unique())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--data",
        default=None,
        help="registered dataset name or path (default: the run file's, or abxi-food-kitchen)",
    )
    p.add_argument("--out", type=Path, default=Path("bench_results/cdsr/study"))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default="all", help="comma list of variant names, or 'all'")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a run file (benchmarks/configs/cdsr/*.toml): its backbone settings and trainer (lr, batch_size, "
        "epochs, patience) are the study's; the flags below override it",
    )
    p.add_argument(
        "--n-blocks", type=int, default=None, help="blocks of every encoder (default: the run file's, or 3)"
    )
    p.add_argument(
        "--set", action="append", default=[], help="backbone setting key=value (JSON value), repeatable"
    )
    p.add_argument("--epochs", type=int, default=None, help="epoch cap (default: the run file's, or 200)")
    p.add_argument(
        "--patience", type=int, default=None, help="early-stopping patience (default: the run file's, or 10)"
    )
    from attnrec.models.sequential.base import SequentialRecommender

    trainer = SequentialRecommender.default_trainer
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"Adam learning rate (default: the run file's, else the model's, {trainer['lr']:g})",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"training users per batch (default: the run file's, else the model's, {trainer['batch_size']})",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--abxi", type=Path, default=None, help="cdsr_peer_abxi.py's JSON lines (the peer rows)")
    p.add_argument(
        "--recbole", type=Path, default=None, help="cdsr_peer_recbole.py's JSON lines (sanity rows)"
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs and parameter counts, run nothing")
    p.add_argument("--report", action="store_true", help="only write the report from the finished runs")
    p.add_argument(
        "--import-run",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="add a finished `attnrec train --out DIR` run as variant NAME (repeatable; once per run), "
        "then only write the report",
    )
    p.add_argument(
        "--import-table",
        type=Path,
        default=None,
        metavar="CSV",
        help="add runs kept only as a table (one row per run: variant, seed, n_params, valid/D/M, test/D/M, "
        "cos/D, best_epoch, epochs_run, s_per_epoch, source) as runs of this command's settings (their run keys: "
        "resuming skips them), then only write the report",
    )
    return p


def plan(a: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], list[Variant]]:
    """``(backbone, trainer, variants)`` of a parsed command: the run file's settings under the flags', and the
    asked variants in the order asked (the matched baselines built when asked for)."""
    file_data, file_backbone, file_trainer = study_settings(a.config) if a.config else (None, {}, {})
    a.data = a.data or file_data or "abxi-food-kitchen"
    file_blocks = file_backbone.pop("n_blocks", 3)
    n_blocks = a.n_blocks if a.n_blocks is not None else file_blocks
    backbone = {"n_blocks": n_blocks, **file_backbone, **_parse_set(a.set)}
    trainer: dict[str, Any] = {"epochs": 200, "patience": 10, **file_trainer}
    # lr / batch_size only when given: a run without them keeps its earlier run key (and the model's default_trainer)
    for key, value in (
        ("epochs", a.epochs),
        ("patience", a.patience),
        ("lr", a.lr),
        ("batch_size", a.batch_size),
    ):
        if value is not None:
            if value <= 0:
                raise SystemExit(f"--{key.replace('_', '-')} must be > 0, got {value}")
            trainer[key] = value
    variants = grid(n_blocks)
    # names hold commas inside brackets (gca[0,1,2]-...): split only on commas outside them
    wanted = None if a.variants == "all" else [w for w in re.split(r",(?![^\[]*\])", a.variants) if w]
    need_matched = wanted is None or any(w.startswith("matched-") for w in wanted)
    if need_matched:
        n_items = _n_items(a.data)
        for mv, got, goal, target in matched_variants(variants, backbone, n_items):
            print(f"{mv.name}: {mv.params} -> {got:,} params vs {target} {goal:,}", flush=True)
            variants.append(mv)
    if wanted is not None:
        unknown = set(wanted) - {v.name for v in variants}
        if unknown:
            raise SystemExit(f"unknown variants {sorted(unknown)}; known: {[v.name for v in variants]}")
        by_name = {v.name: v for v in variants}
        variants = [
            by_name[w] for w in dict.fromkeys(wanted)
        ]  # in the order asked: the most wanted run first
    return backbone, trainer, variants


def _cell(path: Path, line: int, column: str, text: str, *, thousands: bool = False) -> float | None:
    text = text.strip()
    if text in ("", "-", "–", "nan"):
        return None
    try:
        return float(text.replace(",", "") if thousands else text)
    except ValueError:
        raise SystemExit(f"{path}, line {line}, column {column!r}: not a number: {text!r}") from None


def table_records(
    path: Path, variants: Sequence[Variant], backbone: dict[str, Any], trainer: dict[str, Any], data: str
) -> list[dict[str, Any]]:
    """Study records from a CSV of per-run summaries (runs whose record files were lost, transcribed from the
    tables they were published in), keyed as runs of these settings. Columns: ``variant``, ``seed``, ``n_params``,
    ``valid/D/M`` and ``test/D/M`` (domain D, metric M: ``ndcg@10``, ``hr@10``, ``mrr``, ``auc``), ``cos/D``,
    ``best_epoch``, ``epochs_run``, ``s_per_epoch``, ``source``; an empty cell (or ``–``) is a value not kept.
    A variant outside the command's variants, or a (variant, seed) twice, is an error naming the line."""
    import csv

    if not path.is_file():
        raise SystemExit(f"--import-table {path}: no such file")
    by_name = {v.name: v for v in variants}
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"variant", "seed"} - set(reader.fieldnames or ())
        if missing:
            raise SystemExit(f"{path}: no column {sorted(missing)} in the header")
        for line, row in enumerate(reader, start=2):
            if None in row:
                raise SystemExit(f"{path}, line {line}: more cells than the header has columns")
            name = (row["variant"] or "").strip()
            if name not in by_name:
                raise SystemExit(
                    f"{path}, line {line}: variant {name!r} is not one of this command's variants"
                )
            seed_text = (row["seed"] or "").strip()
            if not seed_text.isdigit():
                raise SystemExit(f"{path}, line {line}, column 'seed': not a seed: {seed_text!r}")
            seed = int(seed_text)
            if (name, seed) in seen:
                raise SystemExit(f"{path}, line {line}: {name} seed {seed} is listed twice")
            seen.add((name, seed))
            v = by_name[name]
            rec: dict[str, Any] = {"variant": name, "family": v.family, "model": v.model, "seed": seed}
            rec.update({"params": {**backbone, **v.params, "seed": seed}, "data": data, "trainer": trainer})
            rec.update({"valid": {}, "test": {}, "cos": {}, "curve": []})
            for column, text in row.items():
                if column in ("variant", "seed", "source"):
                    continue
                kind, _, rest = column.partition("/")
                dom, _, metric = rest.partition("/")
                known = (kind in ("valid", "test") and dom and metric and "/" not in metric) or (
                    kind == "cos" and rest and "/" not in rest
                )
                if not known and column not in ("n_params", "best_epoch", "epochs_run", "s_per_epoch"):
                    raise SystemExit(f"{path}, line {line}: unknown column {column!r}")
                value = _cell(path, line, column, text or "", thousands=column == "n_params")
                if value is None:
                    continue
                if kind in ("valid", "test"):
                    rec[kind].setdefault(dom, {})[metric] = value
                elif kind == "cos":
                    rec["cos"][rest] = value
                elif column == "s_per_epoch":
                    rec[column] = value
                else:
                    rec[column] = int(value)
            rec["source"] = (row.get("source") or "").strip() or str(path)
            rec["key"] = run_key(v, seed, backbone, trainer, data)
            out.append(rec)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Run the grid (skipping finished runs), then write the report."""
    a = _parser().parse_args(argv)

    # the run file is read (and refused) before anything is written
    backbone: dict[str, Any] = {}
    trainer: dict[str, Any] = {}
    variants: list[Variant] = []
    if (a.report or a.import_run) and a.import_table is None:
        if a.config:
            study_settings(a.config)
    else:
        backbone, trainer, variants = plan(a)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.import_run:
        results = a.out / "results.jsonl"
        done = {r.get("key") for r in rep.read_jsonl(results)}
        for item in a.import_run:
            name, sep, folder = item.partition("=")
            if not sep or not name or not folder:
                raise SystemExit(f"--import-run expects NAME=DIR, got {item!r}")
            rec = import_run(name, Path(folder))
            if rec["key"] in done:
                print(f"{name}: {folder} already in {results}", flush=True)
                continue
            done.add(rec["key"])
            with results.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"{name}: imported {folder}", flush=True)
    if a.import_table is not None:
        results = a.out / "results.jsonl"
        done = {r.get("key") for r in rep.read_jsonl(results)}
        new = [
            r
            for r in table_records(a.import_table, variants, backbone, trainer, a.data)
            if r["key"] not in done
        ]
        if a.dry_run:
            print(f"{a.import_table}: {len(new)} runs would be added to {results}", flush=True)
            return
        with results.open("a") as f:
            for rec in new:
                f.write(json.dumps(rec) + "\n")
        print(f"{a.import_table}: {len(new)} runs added to {results}", flush=True)
    if a.report or a.import_run or a.import_table is not None:
        print(write_report(a.out, a.abxi, a.recbole))
        return
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    # the library code the runs import (the tree is shared and moves): HEAD, and whether src/ differs from it
    code = git_state(Path(__file__).resolve().parent, short=True, paths=("src",)) or ""
    results = a.out / "results.jsonl"
    done = {r.get("key") for r in rep.read_jsonl(results)}
    todo = [(v, s) for v in variants for s in seeds if run_key(v, s, backbone, trainer, a.data) not in done]
    print(f"{len(variants) * len(seeds)} runs, {len(todo)} to do", flush=True)
    for v, s in todo:
        if a.dry_run:
            print(f"  {v.name} seed {s}: {v.model} {v.params}")
            continue
        rec = run_one(v, s, a.data, backbone, trainer, a.threads)
        rec["key"] = run_key(v, s, backbone, trainer, a.data)
        rec["command"] = " ".join([sys.executable, *sys.argv])
        rec["code"] = code
        with results.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        best = {d: round(m.get("ndcg@10", float("nan")), 4) for d, m in rec["test"].items()}
        print(
            f"{v.name} seed {s}: test NDCG@10 {best}, |cos| {rec['cos']}, {rec['s_per_epoch']} s/epoch",
            flush=True,
        )
    if not a.dry_run:
        print(write_report(a.out, a.abxi, a.recbole))


if __name__ == "__main__":
    main()

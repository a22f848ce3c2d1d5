"""Multimodal top-K (issue 15): validation-only tuning of lightgcn, freedom and mrcsaf with the same budget, and
diagnostics of the fitted models (validation curves, mrcsaf's modality weights, the scale of the two item terms).

    .venv/bin/python benchmarks/mm_tune.py --dataset gift-cards --models lightgcn,freedom,mrcsaf --seeds 0,1,2 \\
        --out bench_results/multimodal/tune-gift-cards.jsonl
    .venv/bin/python benchmarks/mm_tune.py --dataset ml-100k --models freedom,mrcsaf --grid default --seeds 0 ...
    .venv/bin/python benchmarks/mm_tune.py --report bench_results/multimodal/tune-gift-cards.jsonl

Same split, modalities, protocol and row settings as benchmarks/bench_multimodal.py (its ``load``,
``modalities``, ``ROWS``, ``fit_ours``; this script never writes the exported MMRec folder, which a peer run may be
reading). Every fit trains with early stopping on validation Recall@20. The grid fits never touch test: each
model's point is chosen by the mean validation Recall@20 over seeds among every point fitted under the same
settings in ``--out``, then that point is refitted per seed and test is read once at its best epoch
(``--no-test``: grid fits only, when more points will follow; ``--test-only``: one point chosen before, on
another seed's or data set's validation, fitted once per seed with test read once). Records before 2026-12-06 10:40 UTC (no ``role``)
read test at every grid point; the report shows only the chosen point's.

Each record stores the code it ran (``commit``: short hash, ``+dirty`` when src/ or benchmarks/ differed) and the
model's full resolved config (``config``: every default filled in, e.g. mrcsaf's ``selector_input``). A rerun on
an existing ``--out`` refuses (naming the file, line and differing fields) any record of its models, under its
settings, whose config is not the one this checkout builds for that point and seed, or that has none (written
before this check, 2026-12-06): such a row is never taken as done nor chosen among.

Grids (MMRec's style, the same number of points for each model — 8 — so each gets the same tuning budget):
lightgcn ``reg`` × ``n_layers`` (the first four of MMRec's LightGCN ``reg_weight`` grid × two of its
layer counts); freedom ``reg_weight`` × ``dropout`` (MMRec's FREEDOM grid); mrcsaf ω
(``reg_weight``, the paper's Figure 5 values) × ``dropout``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import git_state  # noqa: E402
from bench_multimodal import fit_ours, load, modalities, row_model  # noqa: E402

HERE = Path(__file__).resolve().parent

#: model → {setting: values}; every model's grid has 8 points
GRIDS: dict[str, dict[str, list[Any]]] = {
    "lightgcn": {"reg": [1e-2, 1e-3, 1e-4, 1e-5], "n_layers": [2, 3]},
    "freedom": {"reg_weight": [0.0, 1e-5, 1e-4, 1e-3], "dropout": [0.8, 0.9]},
    "mrcsaf": {"reg_weight": [0.0, 1e-5, 1e-4, 1e-3], "dropout": [0.8, 0.9]},
}
#: ``--grid wide``: 8 more points each, outside MMRec's grids — lightgcn's other layer counts of MMRec's grid,
#: lighter edge pruning for freedom / mrcsaf (MMRec's 0.8 / 0.9 prune most of a small set's few edges)
WIDE: dict[str, dict[str, list[Any]]] = {
    "lightgcn": {"reg": [1e-2, 1e-3, 1e-4, 1e-5], "n_layers": [1, 4]},
    "freedom": {"reg_weight": [1e-5, 1e-4], "dropout": [0.0, 0.2, 0.5, 0.7]},
    "mrcsaf": {"reg_weight": [1e-5, 1e-4], "dropout": [0.0, 0.2, 0.5, 0.7]},
}


def grid_points(model: str, spec: str) -> list[dict[str, Any]]:
    """The settings to fit for ``model``: its grid (``spec`` "grid", or "wide": :data:`WIDE`), the row's own
    settings only ("default"), or explicit points ``"k=v;k=v|k=v"`` (``|`` separates points, values parsed as JSON)."""
    if spec == "default":
        return [{}]
    if spec in ("grid", "wide"):
        grid = (GRIDS if spec == "grid" else WIDE)[model]
        return [dict(zip(grid, vals, strict=True)) for vals in itertools.product(*grid.values())]
    return [
        {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in point.split(";") if kv)}
        for point in spec.split("|")
    ]


@torch.no_grad()
def inspect(model: Any) -> dict[str, Any]:
    """Diagnostics of a fitted freedom or mrcsaf at its best epoch, on the full user-item graph (as scored).

    ``item_terms``: for the two item terms of the score — the user-item propagated item ṗ (FREEDOM's i_g) and the
    item-graph term h (eq. 24: p = h + ṗ) — the mean row norm and the mean over users of the std over items of
    u·term (how much each term moves the ranking), per modality block for mrcsaf. mrcsaf also gets the selector's
    weights (mean, std, min, max per modality), |cos(e_m, Δe_m)| and the fusion output's scale against e_m (``e_norm``:
    the mean row norm of e^m, the ID rows or the projected features as ``modal_embedding`` reads it)."""
    module = model.module
    module.eval()
    out: dict[str, Any] = {}
    if model.name == "mrcsaf":
        users, p_dot = module.propagated()
        h = module.item_graph_part()
        blocks = range(module.n_modalities)
        names = list(module.modalities)
        d = module.config.dim
        diag = model.diagnostics()
        w = diag["modality_weights"]
        out["selector"] = {
            m: {
                "mean": float(w[:, j].mean()),
                "std": float(w[:, j].std()),
                "min": float(w[:, j].min()),
                "max": float(w[:, j].max()),
            }
            for j, m in enumerate(names)
        }
        if "abs_cos" in diag:
            out["abs_cos"] = {k: float(v) for k, v in diag["abs_cos"].items()}
        e = module.modal_embeddings()  # e^m: the ID rows, or the projected features (modal_embedding)
        fused, _ = module.fused_items(e=e)
        out["fusion_scale"] = {
            m: {
                "e_norm": float(e[j].norm(dim=1).mean()),
                "fused_norm": float(fused[j].norm(dim=1).mean()),
                "bias_norm": float(module.fusion.fuse.bias.norm()) if module.fusion is not None else 0.0,
            }
            for j, m in enumerate(names)
        }
    else:
        eu, ei = module.compute_embeddings()
        hh = module.item.weight
        for _ in range(module.config.n_mm_layers):
            hh = module.item_graph_mm(hh)
        users, p_dot, h = eu, ei - hh, hh
        blocks, names, d = range(1), ["all"], users.shape[1]
    terms: dict[str, Any] = {}
    for j, m in zip(blocks, names, strict=True):
        u = users[:, j * d : (j + 1) * d]
        for label, t in (("p_dot", p_dot), ("h", h)):
            tb = t[:, j * d : (j + 1) * d]
            terms.setdefault(m, {})[label] = {
                "norm": float(tb.norm(dim=1).mean()),
                "score_spread": score_spread(u, tb),
            }
    out["item_terms"] = terms
    out["user_norm"] = float(users.norm(dim=1).mean())
    return out


def score_spread(users: torch.Tensor, items: torch.Tensor, block: int = 1024) -> float:
    """Mean over users of the std over items of ``users @ items.T`` ((U, d) and (I, d) → a float), computed in
    blocks of ``block`` users so that no U × I matrix is held at once."""
    stds = [(users[i : i + block] @ items.T).std(dim=1) for i in range(0, users.shape[0], block)]
    return float(torch.cat(stds).mean())


def run_settings(dataset: str, split_seed: int, epochs: int, patience: int) -> dict[str, Any]:
    """Everything besides model, grid point and seed that changes a fit; stored in each record as ``settings``
    and part of the resume key, so a fit under other settings (another split, patience, ...) is never taken for
    this one. ``diagnostic`` is always None now: it marked the runs of the former ``--zero-fusion-bias`` patch
    (mrcsaf's eq. 18 bias started at zero), which is the model option ``fusion_bias_init="zero"`` since, given as
    a grid point; the key stays so that the records of before still group and resume as they did."""
    return {
        "dataset": dataset,
        "split_seed": split_seed,
        "epochs": epochs,
        "patience": patience,
        "diagnostic": None,
    }


def settings_of(rec: dict[str, Any]) -> dict[str, Any]:
    """A record's ``settings``; records written before they were stored (2026-12-06, before 10:40 UTC) get
    ``{"dataset", "diagnostic", "legacy": True}`` and so never match a new run's key."""
    if "settings" in rec:
        return dict(rec["settings"])
    return {"dataset": rec.get("dataset"), "diagnostic": rec.get("diagnostic"), "legacy": True}


def resolved_config(
    model: str, point: dict[str, Any], seed: int, feats: dict[str, np.ndarray]
) -> dict[str, Any]:
    """The full config (as JSON would return it) of row ``model`` at grid point ``point`` with ``seed``, as
    bench_multimodal's ``fit_ours`` builds it: what a record must hold to be reused (:func:`check_config`)."""
    estimator, _ = row_model(model, seed, feats, point)
    return dict(json.loads(json.dumps(estimator.config.to_dict())))


def check_config(path: Path, line: int, rec: dict[str, Any], want: dict[str, Any]) -> None:
    """Refuse record ``rec`` (line ``line`` of ``path``) unless its ``config`` is ``want``: a fit under another
    model config (e.g. mrcsaf's unit-length selector input, the only one before 5e8876b) must not be resumed as
    done nor chosen among, and a record without one (written before configs were recorded) cannot show it is not."""
    where = (
        f"{path}:{line}: {rec['model']} point {_point(rec['tune_point'])} seed {rec['seed']} ({role_of(rec)}, "
        f"commit {rec.get('commit')!r})"
    )
    got = rec.get("config")
    fix = "so it is not reused; write to another --out or remove that line"
    if not isinstance(got, dict):
        raise SystemExit(f"{where} records no model config (written before configs were recorded), {fix}")
    missing = object()
    diff = sorted(k for k in got.keys() | want.keys() if got.get(k, missing) != want.get(k, missing))
    if diff:
        fields = "; ".join(
            f"{k}: recorded {got.get(k, '<absent>')!r}, now {want.get(k, '<absent>')!r}" for k in diff
        )
        raise SystemExit(f"{where} was fitted under another model config ({fields}), {fix}")


def role_of(rec: dict[str, Any]) -> str:
    """``grid`` (validation only), ``test`` (the chosen point's fit, test read once) or ``legacy`` (a record
    from before the split into the two: its fit read test at every grid point)."""
    return str(rec.get("role", "legacy"))


def _point(p: dict[str, Any]) -> str:
    return json.dumps(p, sort_keys=True)


def choose(recs: list[dict[str, Any]]) -> str | None:
    """The grid point (as :func:`_point`) with the highest mean validation Recall@20, over the seeds that every
    point has (all seeds if they share none: points fitted in separate runs); a tie (to 1e-9) keeps the point seen
    first (grid order); a NaN mean is never chosen. None when there is none."""
    seeds: dict[str, set[int]] = {}
    for r in recs:
        seeds.setdefault(_point(r["tune_point"]), set()).add(r["seed"])
    common = set.intersection(*seeds.values()) if seeds else set()
    means: dict[str, list[float]] = {}
    for r in recs:
        if not common or r["seed"] in common:
            means.setdefault(_point(r["tune_point"]), []).append(float(r["valid"]["recall@20"]))
    best: tuple[float, str] | None = None
    for point, vs in means.items():
        v = float(np.mean(vs))
        if not np.isnan(v) and (best is None or v > best[0] + 1e-9):
            best = (v, point)
    return None if best is None else best[1]


def report(path: Path, spec: str = "all") -> None:
    """Per run settings and model: each grid point's mean ± std over seeds of validation Recall@20 (never test),
    the point chosen on validation marked; then the chosen points' test metrics, from the ``test`` fits made after
    the choice, and, in rows of their own, the ``--test-only`` fits (``chosen_before``: a point chosen on another
    seed's or data set's validation, not among this file's fits). ``spec`` "grid" / "wide" keeps only that grid's
    points (the choice is then made among them), "all" every point in the file. Records of the former
    ``--zero-fusion-bias`` diagnostic are grouped apart."""
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in recs:
        if "tune_point" in r and (spec == "all" or r["tune_point"] in grid_points(r["model"], spec)):
            runs.setdefault((json.dumps(settings_of(r), sort_keys=True), r["model"]), []).append(r)
    print("| settings | model | setting | seeds | valid Recall@20 | best epochs | chosen |")
    print("|---|---|---|---|---|---|---|")
    chosen: dict[tuple[str, str], str | None] = {}
    for (settings, model), rs in sorted(runs.items()):
        grid_fits = [r for r in rs if role_of(r) != "test"]
        # without grid fits (only --test-only runs) there is no choice here: each point was chosen elsewhere
        best = chosen[(settings, model)] = choose(grid_fits) if grid_fits else None
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in grid_fits or rs:
            groups.setdefault(_point(r["tune_point"]), []).append(r)
        for point, g in groups.items():
            vs = [r["valid"]["recall@20"] for r in g]
            mark = "**yes**" if point == best else "" if grid_fits else "chosen before"
            print(
                f"| `{settings}` | {model} | `{point}` | {len(g)} | {np.mean(vs):.4f} ± {np.std(vs):.4f} | "
                f"{[r['best_epoch'] for r in g]} | {mark} |"
            )
    print(
        "\n| settings | model | chosen setting | seeds | Recall@10 | Recall@20 | NDCG@10 | NDCG@20 | test from |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (settings, model), best in chosen.items():
        rs = runs[(settings, model)]
        before: dict[str, list[dict[str, Any]]] = {}
        for r in rs:
            # a test fit with no grid fit beside it was chosen elsewhere too (records from before the flag)
            if role_of(r) == "test" and (r.get("chosen_before") or best is None):
                before.setdefault(_point(r["tune_point"]), []).append(r)
        if best is not None:
            at_best = [r for r in rs if _point(r["tune_point"]) == best and "test" in r]
            fresh = [r for r in at_best if role_of(r) == "test" and not r.get("chosen_before")]
            legacy = [r for r in at_best if role_of(r) == "legacy"]
            # legacy files: every grid fit read test; only the chosen point's numbers are shown
            if fresh:
                _test_row(settings, model, best, fresh, "fit after the choice")
            elif legacy:
                _test_row(settings, model, best, legacy, "legacy grid fit (test read at every point)")
            else:
                print(f"| `{settings}` | {model} | `{best}` | 0 | not fitted on test yet | | | | |")
        for point, g in before.items():
            _test_row(settings, model, point, g, "chosen before (another seed / data set)")


def _test_row(settings: str, model: str, point: str, rs: list[dict[str, Any]], source: str) -> None:
    """One row of :func:`report`'s test table: mean ± std over the records ``rs`` of the four test metrics."""
    cells = [
        f"{np.mean([r['test'][k] for r in rs]):.4f} ± {np.std([r['test'][k] for r in rs]):.4f}"
        for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
    ]
    print(f"| `{settings}` | {model} | `{point}` | {len(rs)} | " + " | ".join(cells) + f" | {source} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="gift-cards", choices=["ml-100k", "gift-cards"])
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument("--models", default="lightgcn,freedom,mrcsaf")
    ap.add_argument(
        "--grid",
        default="grid",
        help='"grid", "wide", "default" or explicit points "k=v;k=v|k=v"; with --report: "grid", "wide", "all"',
    )
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--patience", type=int, default=20)
    ap.add_argument("--inspect", action="store_true", help="record diagnostics of freedom / mrcsaf fits")
    ap.add_argument(
        "--no-test", action="store_true", help="grid fits only (more points to come): choose and test later"
    )
    ap.add_argument(
        "--test-only",
        action="store_true",
        help="the one point of --grid was chosen before (another seed's validation): fit it once per seed, "
        "reading test once at its best epoch, with no grid fit",
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--report", type=Path, default=None)
    args = ap.parse_args()
    if args.report is not None:
        report(args.report, args.grid)
        return
    torch.set_num_threads(1)
    tune(args)


def tune(args: argparse.Namespace) -> None:
    """The fitting part of :func:`main`: grid fits on validation, then the chosen point's test fits."""
    out = args.out or Path(f"bench_results/multimodal/tune-{args.dataset}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    train, valid, test, _, ds = load(args.dataset, args.split_seed)
    feats = modalities(args.dataset, ds, train)
    settings = run_settings(args.dataset, args.split_seed, args.epochs, args.patience)
    commit = git_state(HERE, short=True)
    print(
        json.dumps({"command": " ".join(sys.argv), "threads": 1, "settings": settings, "commit": commit}),
        flush=True,
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")

    def fit(model: str, point: dict[str, Any], seed: int, role: str) -> dict[str, Any]:
        look = inspect if args.inspect and model in ("freedom", "mrcsaf") else None
        rec = fit_ours(
            model,
            seed,
            (train, valid, test),
            feats,
            args.epochs,
            args.patience,
            1,
            point,
            look,
            score_test=role == "test",
        )
        rec.update(
            dataset=args.dataset,
            tune_point=point,
            settings=settings,
            role=role,
            command=" ".join(sys.argv),
            commit=commit,
            config=resolved_config(model, point, seed, feats),
        )
        if args.test_only:  # the point was chosen on validation before this run, not among this file's fits
            rec["chosen_before"] = True
        print(json.dumps({k: v for k, v in rec.items() if k != "curve"}), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        return rec

    lines = out.read_text().splitlines() if out.exists() else []
    recs = []
    for i, line in enumerate(lines, 1):
        if line.strip():
            try:
                recs.append((i, json.loads(line)))
            except json.JSONDecodeError as err:
                raise SystemExit(
                    f"{out}:{i}: not a JSON record ({err}); remove or repair that line"
                ) from None
    mine: list[dict[str, Any]] = []
    for i, r in recs:
        if settings_of(r) == settings and role_of(r) in ("grid", "test"):
            # before any fit: every row this run may resume or choose among must hold this checkout's config
            if r["model"] in models:
                check_config(out, i, r, resolved_config(r["model"], r["tune_point"], r["seed"], feats))
            mine.append(r)

    def done(model: str, point: str, seed: int, role: str) -> bool:  # resumable: rerun the same command
        return any(
            (r["model"], _point(r["tune_point"]), r["seed"], role_of(r)) == (model, point, seed, role)
            for r in mine
        )

    for model in models:
        if args.test_only:
            points = grid_points(model, args.grid)
            if len(points) != 1:
                raise SystemExit(f"--test-only takes one point, --grid {args.grid!r} gives {len(points)}")
            for seed in seeds:
                if not done(model, _point(points[0]), seed, "test"):
                    mine.append(fit(model, points[0], seed, "test"))
            continue
        # grid fits see validation only (a single point too: more points may follow in another run)
        for point in grid_points(model, args.grid):
            for seed in seeds:
                if not done(model, _point(point), seed, "grid"):
                    mine.append(fit(model, point, seed, "grid"))
        if args.no_test:
            continue
        # then test is read once per seed, for the point chosen on validation among every point of this model
        # fitted under these settings (this run's and earlier runs' in --out)
        best = choose([r for r in mine if r["model"] == model and role_of(r) == "grid"])
        if best is None:
            print(json.dumps({"model": model, "chosen": None, "why": "every grid mean is NaN"}), flush=True)
            continue
        for seed in seeds:
            if not done(model, best, seed, "test"):
                mine.append(fit(model, json.loads(best), seed, "test"))


if __name__ == "__main__":
    main()

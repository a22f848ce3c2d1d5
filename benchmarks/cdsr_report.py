"""Tables, correlations and plots of the cross-domain sequential study (``cdsr_study.py``) and the ABXI peer run.

Pure functions over the study's records (one JSON object per finished run, see ``cdsr_study.run_record``) and over
the ABXI runner's JSON lines (``cdsr_peer_abxi.py``). Plots need matplotlib (the ``plots`` extra), imported only
when a plot is drawn.

Record fields used here: ``variant``, ``family`` (``sasrec`` / ``gca`` / ``matched`` / ``peer``), ``seed``,
``n_params``, ``test`` and ``valid`` ({domain: {metric: value}}), ``cos`` ({domain: mean |cos(X, X')| of that
domain's GCA modules at the best epoch}), ``s_per_epoch``, ``curve`` (per-epoch validation metrics and elapsed
seconds).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

TABLE_METRICS = ("hr@10", "ndcg@10", "mrr", "auc")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSON-lines file (a missing file is no records; a torn last line is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # an interrupted run can leave a partial last line; the run is simply redone
    return out


def _mean_std(values: Sequence[float]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.4f}"
    return f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f}"


def domains_of(records: Iterable[dict[str, Any]]) -> list[str]:
    """The target domains that occur in the records' test metrics, sorted."""
    return sorted({d for r in records for d in r.get("test", {})})


def domain_table(
    records: Sequence[dict[str, Any]], domain: str, metrics: Sequence[str] = TABLE_METRICS
) -> str:
    """A Markdown table for one target domain: one row per variant (mean ± sample std over its seeds) with the
    test metrics, mean |cos| of the domain's GCA modules, parameter count and seconds per epoch."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if domain in r.get("test", {}):
            groups[r["variant"]].append(r)
    head = ["variant", "seeds", *[f"test {m}" for m in metrics]]
    head += ["abs cos(X,X')", "params", "s/epoch"]  # no '|' inside a Markdown cell
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in sorted(groups, key=lambda v: (groups[v][0].get("family", ""), v)):
        rs = groups[variant]
        row = [variant, str(len(rs))]
        row += [_mean_std([r["test"][domain].get(m, float("nan")) for r in rs]) for m in metrics]
        row.append(_mean_std([r.get("cos", {}).get(domain, float("nan")) for r in rs]))
        row.append(f"{int(np.mean([r['n_params'] for r in rs])):,}" if rs[0].get("n_params") else "–")
        spe = [r["s_per_epoch"] for r in rs if r.get("s_per_epoch") is not None]
        row.append(f"{np.median(spe):.1f}" if spe else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, float | int]:
    """Pearson and Spearman correlation of paired values (NaN pairs dropped); NaN coefficients below 3 pairs."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    out: dict[str, float | int] = {"n": int(keep.sum())}
    if len(xa) < 3 or np.ptp(xa) == 0 or np.ptp(ya) == 0:
        out.update(
            pearson=float("nan"), pearson_p=float("nan"), spearman=float("nan"), spearman_p=float("nan")
        )
        return out
    p = stats.pearsonr(xa, ya)
    s = stats.spearmanr(xa, ya)
    out.update(
        pearson=float(p.statistic),
        pearson_p=float(p.pvalue),
        spearman=float(s.statistic),
        spearman_p=float(s.pvalue),
    )
    return out


def cos_points(records: Sequence[dict[str, Any]], domain: str) -> tuple[list[float], list[float], list[str]]:
    """(|cos| values, test NDCG@10, variant names) of every run that has a |cos| for ``domain``."""
    xs, ys, names = [], [], []
    for r in records:
        c = r.get("cos", {}).get(domain)
        if c is None or domain not in r.get("test", {}):
            continue
        xs.append(float(c))
        ys.append(float(r["test"][domain]["ndcg@10"]))
        names.append(r["variant"])
    return xs, ys, names


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - the plots extra is installed in CI
        raise ImportError("the study's plots need matplotlib: pip install 'attnrec[plots]'") from e
    return plt


def epoch_cap(record: dict[str, Any]) -> int | None:
    """The run's epoch cap (``trainer.epochs``): runs of different caps sit at different points of training,
    so the scatter and the correlations keep them apart."""
    cap = record.get("trainer", {}).get("epochs")
    return int(cap) if cap is not None else None


def cos_correlations(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | int]]]:
    """|cos| against test NDCG@10 per domain: ``{domain: {"all": corr, "cap N": corr, ...}}`` over every run with
    a |cos| and over the runs of each epoch cap."""
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    for dom in domains_of(records):
        with_cos = [r for r in records if r.get("cos", {}).get(dom) is not None]
        groups = {"all": with_cos}
        for cap in sorted({epoch_cap(r) or 0 for r in with_cos}):
            groups[f"cap {cap}"] = [r for r in with_cos if (epoch_cap(r) or 0) == cap]
        out[dom] = {g: correlation(*cos_points(rs, dom)[:2]) for g, rs in groups.items()}
    return out


def plot_cos_scatter(records: Sequence[dict[str, Any]], out: Path) -> dict[str, dict[str, float | int]]:
    """Scatter of |cos(X, X')| against test NDCG@10, one panel per domain (the paper's figure), one colour per
    epoch cap; returns the correlations over all runs per domain and writes ``out`` (PNG)."""
    plt = _pyplot()
    domains = domains_of(records)
    fig, axes = plt.subplots(1, max(1, len(domains)), figsize=(5 * max(1, len(domains)), 4), squeeze=False)
    corr: dict[str, dict[str, float | int]] = {}
    for ax, dom in zip(axes[0], domains, strict=False):
        xs, ys, _ = cos_points(records, dom)
        corr[dom] = correlation(xs, ys)
        for cap in sorted({epoch_cap(r) or 0 for r in records}):
            cx, cy, _ = cos_points([r for r in records if (epoch_cap(r) or 0) == cap], dom)
            if cx:
                ax.scatter(cx, cy, s=18, alpha=0.8, label=f"cap {cap} epochs")
        c = corr[dom]
        ax.set_title(f"domain {dom}: Pearson {c['pearson']:.2f}, Spearman {c['spearman']:.2f} (n={c['n']})")
        ax.set_xlabel("mean |cos(X, X')| at the best epoch")
        ax.set_ylabel("test NDCG@10")
        if xs:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return corr


def plot_cos_trajectories(records: Sequence[dict[str, Any]], out: Path) -> bool:
    """Within-run view: validation |cos(X, X')| against validation NDCG@10 at every epoch, one line per gca run
    whose curve logged |cos|, one panel per domain; writes ``out`` and returns True when any run had one."""
    runs = [r for r in records if any("cos" in c for c in r.get("curve", []))]
    if not runs:
        return False
    plt = _pyplot()
    domains = sorted({d for r in runs for c in r["curve"] for d in c.get("cos", {})})
    fig, axes = plt.subplots(1, len(domains), figsize=(5 * len(domains), 4), squeeze=False)
    for ax, dom in zip(axes[0], domains, strict=True):
        for r in runs:
            pts = [(c["cos"][dom], c["valid"][dom]) for c in r["curve"] if dom in c.get("cos", {})]
            if pts:
                x, y = zip(*pts, strict=True)
                ax.plot(x, y, marker=".", label=f"{r['variant']} s{r['seed']}")
        ax.set_xlabel("validation |cos(X, X')| (epoch by epoch)")
        ax.set_ylabel(f"valid NDCG@10, domain {dom}")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def matched_pairs(records: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(gca variant, its matched baseline) name pairs present in the records for the per-seed tables: each
    ``matched-gca[P]<tail>`` with the variant it was widened to, ``gca[P]-sigmoid-ln<tail>``. The pairing itself is
    :func:`baseline_of`'s, so these tables and :func:`matched_summary` cannot disagree on a variant's baseline."""
    names = {r["variant"] for r in records}
    pairs = []
    for name in sorted(names):
        if not name.startswith("matched-gca["):
            continue
        head, _, tail = name[len("matched-") :].partition("]")
        target = f"{head}]-sigmoid-ln{tail}"
        if target in names and baseline_of(target, names) == name:
            pairs.append((target, name))
    return pairs


def paired_table(records: Sequence[dict[str, Any]], gca: str, matched: str, metric: str = "ndcg@10") -> str:
    """Per seed and domain, test ``metric`` of ``gca`` against its parameter-matched baseline ``matched`` (the
    seeds both have), the difference, and how many (seed, domain) pairs gca is ahead in."""
    by = {(r["variant"], r["seed"]): r for r in records if r["variant"] in (gca, matched)}
    seeds = sorted({s for v, s in by if v == gca} & {s for v, s in by if v == matched})
    lines = [f"| seed | domain | {gca} | {matched} | difference |", "|---|---|---|---|---|"]
    ahead = total = 0
    diffs: dict[str, list[float]] = defaultdict(list)
    for seed in seeds:
        g, m = by[(gca, seed)], by[(matched, seed)]
        for dom in sorted(set(g["test"]) & set(m["test"])):
            a, b = g["test"][dom][metric], m["test"][dom][metric]
            diffs[dom].append(a - b)
            ahead += a > b
            total += 1
            lines.append(f"| {seed} | {dom} | {a:.4f} | {b:.4f} | {a - b:+.4f} |")
    for dom, d in sorted(diffs.items()):
        sd = f" ± {np.std(d, ddof=1):.4f}" if len(d) > 1 else ""
        lines.append(f"| mean | {dom} | | | {np.mean(d):+.4f}{sd} |")
    lines.append(f"\ngca ahead in {ahead} of {total} (seed, domain) pairs on test {metric}.")
    return "\n".join(lines)


def module_count(name: str) -> int | None:
    """How many GCA modules a study variant's name says it has (``gca[0,1]-tanh-ln`` → 2, ``matched-gca[1]`` →
    1); None for a name without positions (``sasrec-mixed``)."""
    head, sep, rest = name.partition("[")
    if not sep or not head.endswith("gca"):
        return None
    inner = rest.partition("]")[0]
    return len([p for p in inner.split(",") if p.strip()])


def run_tail(name: str) -> str:
    """What follows a study variant's name after its first space (``" [cap 25]"`` for an imported run's
    ``"gca[1]-sigmoid-ln [cap 25]"``), or ``""``: runs of different settings are never each other's baseline."""
    _, sep, tail = name.partition(" ")
    return sep + tail


def baseline_of(variant: str, names: Iterable[str]) -> str | None:
    """The parameter-matched baseline a gca variant is compared with: the ``matched-gca[...]`` run with as many
    modules and the same settings tail (:func:`run_tail`). The baseline is widened to the parameter count of a
    ``-sigmoid-ln`` variant of that module count; the count hardly depends on position, gate or LayerNorm,
    ``cdsr_study.matched_variants``. Among several candidates, the one named with the variant's own positions,
    else the first by name."""
    if variant.startswith("matched-"):
        return None
    k = module_count(variant)
    if not k:
        return None
    tail = run_tail(variant)
    found = sorted(
        n for n in names if n.startswith("matched-gca[") and module_count(n) == k and run_tail(n) == tail
    )
    own = "matched-" + variant.partition("]")[0] + "]" + tail
    return own if own in found else (found[0] if found else None)


def matched_summary(records: Sequence[dict[str, Any]], metric: str = "ndcg@10") -> tuple[str, int, int]:
    """Every gca variant against its parameter-matched baseline, paired by seed: per domain, over the seeds both
    have a test ``metric`` for, how many seeds it is ahead in, the mean difference and a paired t-test's p; and over
    the seeds both have, how many it is ahead in on every domain (a domain either lacks counts as not ahead).
    Records without a seed are left out. Returns ``(markdown table, variants ahead on every domain in most of their
    seeds, variants compared)``."""
    by = {(r["variant"], r["seed"]): r for r in records if r.get("seed") is not None}
    names = {v for v, _ in by}
    domains = domains_of(records)

    def value(variant: str, seed: int, dom: str) -> float | None:
        v = by[(variant, seed)].get("test", {}).get(dom, {}).get(metric)
        return None if v is None or math.isnan(v) else float(v)

    head = ["variant", "baseline", "seeds", "ahead on every domain"]
    head += [f"{d}: ahead, mean diff, paired t p" for d in domains]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    most = compared = 0
    for variant in sorted(names):
        base = baseline_of(variant, names)
        if base is None:
            continue
        seeds = sorted({s for v, s in by if v == variant} & {s for v, s in by if v == base})
        if not seeds:
            continue
        compared += 1
        cells = []
        for dom in domains:
            pairs = [
                (g, b)
                for s in seeds
                if (g := value(variant, s, dom)) is not None and (b := value(base, s, dom)) is not None
            ]
            if not pairs:
                cells.append("–")
                continue
            diffs = [g - b for g, b in pairs]
            p = stats.ttest_rel(*zip(*pairs, strict=True)).pvalue if len(pairs) > 1 else float("nan")
            cells.append(f"{sum(d > 0 for d in diffs)} of {len(pairs)}, {np.mean(diffs):+.4f}, p {p:.2g}")
        all_ahead = 0
        for s in seeds:
            both = [(value(variant, s, d), value(base, s, d)) for d in domains]
            all_ahead += all(g is not None and b is not None and g > b for g, b in both)
        most += all_ahead * 2 > len(seeds)
        row = [variant, base, ",".join(str(s) for s in seeds), f"{all_ahead} of {len(seeds)}", *cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines), most, compared


def best_by_validation(
    records: Sequence[dict[str, Any]], metric: str = "ndcg@10"
) -> list[tuple[str, float, int]]:
    """Variants that report every domain, ranked by validation ``metric`` averaged over the domains and then over
    seeds (the study's selection rule: validation only): ``[(variant, mean, seeds), ...]``, best first."""
    domains = domains_of(records)
    groups: dict[str, list[float]] = defaultdict(list)
    for r in records:
        valid = r.get("valid", {})
        if r.get("family") == "peer" or not all(metric in valid.get(d, {}) for d in domains):
            continue
        groups[r["variant"]].append(float(np.mean([valid[d][metric] for d in domains])))
    ranked = [(v, float(np.mean(xs)), len(xs)) for v, xs in groups.items()]
    return sorted(ranked, key=lambda t: -t[1])


def _parameter_axis(ax: Any, values: Sequence[float]) -> None:
    """A parameter-count x axis that stays readable: log scale only across more than a factor of 10, ticks in
    millions (``1.99M``), no minor tick labels (they overlapped on a narrow log range)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if values and max(values) > 10 * min(values):
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e6:.4g}M"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_params(records: Sequence[dict[str, Any]], out: Path) -> None:
    """Test NDCG@10 against parameter count, one panel per domain, one colour per family; writes ``out``."""
    plt = _pyplot()
    domains = domains_of(records)
    fig, axes = plt.subplots(1, max(1, len(domains)), figsize=(5 * max(1, len(domains)), 4), squeeze=False)
    for ax, dom in zip(axes[0], domains, strict=False):
        fams: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        for r in records:
            if dom in r.get("test", {}) and r.get("n_params"):
                fams[r.get("family", "?")][0].append(r["n_params"])
                fams[r.get("family", "?")][1].append(r["test"][dom]["ndcg@10"])
        for fam, (xs, ys) in sorted(fams.items()):
            ax.scatter(xs, ys, s=18, label=fam)
        _parameter_axis(ax, [x for xs, _ in fams.values() for x in xs])
        ax.set_xlabel("parameters")
        ax.set_ylabel("test NDCG@10")
        ax.set_title(f"domain {dom}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def abxi_summary(lines: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """From ``cdsr_peer_abxi.py``'s JSON lines: header facts, the per-epoch curve (validation and test NDCG@10 per
    domain, cumulative training seconds) and the test metrics at the epoch ABXI's own rule selects (best summed
    validation MRR). None when there is no finished epoch."""
    header = next((x for x in lines if x.get("kind") == "header"), None)
    epochs = [x for x in lines if x.get("kind") == "epoch"]
    if header is None or not epochs:
        return None
    elapsed = 0.0
    curve = []
    for e in epochs:
        elapsed += e["train_s"]
        curve.append(
            {
                "epoch": e["epoch"],
                "train_s_cum": elapsed,
                "train_s": e["train_s"],
                "loadavg": e["loadavg_before"],
                "valid": {d: e["val"][d]["ndcg@10"] for d in e["val"]},
                "test": {d: e["test"][d]["ndcg@10"] for d in e["test"]},
            }
        )
    chosen = [
        e for e in epochs if e["abxi_selected"]
    ] or epochs  # warm-up only: no selection yet, the last epoch
    sel = chosen[-1]
    return {
        "commit": header["commit"],
        "command": header["command"],
        "transcribed_from": header.get("transcribed_from"),
        "n_params": header["n_params"],
        "threads": header["threads"],
        "epochs": len(epochs),
        "selected_epoch": sel["epoch"],
        "test": {
            d: {k: v for k, v in sel["test"][d].items() if k != "abxi_cal_metrics"} for d in sel["test"]
        },
        "valid": {d: {k: v for k, v in sel["val"][d].items() if k != "abxi_cal_metrics"} for d in sel["val"]},
        "s_per_epoch": float(np.median([e["train_s"] for e in epochs])),
        "curve": curve,
    }


def value_at(
    curve: Sequence[dict[str, Any]],
    key: str,
    domain: str,
    *,
    epoch: int | None = None,
    seconds: float | None = None,
) -> float | None:
    """Best validation-selected ``key`` ("valid"/"test") NDCG@10 of ``domain`` reached within ``epoch`` epochs or
    ``seconds`` of training (the row at the best validation NDCG@10 so far); None when nothing was reached yet,
    or when the curve ends before ``epoch`` / ``seconds`` (a peer stopped early has no value there)."""
    if not curve or (epoch is not None and epoch > curve[-1]["epoch"]):
        return None  # the curve stopped before that epoch: its best so far is not its value there
    if seconds is not None and seconds > curve[-1]["train_s_cum"]:
        return None
    rows = [
        c
        for c in curve
        if (epoch is None or c["epoch"] <= epoch) and (seconds is None or c["train_s_cum"] <= seconds)
    ]
    rows = [c for c in rows if domain in c.get("valid", {}) and domain in c.get(key, {})]
    if not rows:
        return None
    best = max(rows, key=lambda c: c["valid"][domain])
    return float(best[key][domain])


def plot_curves(abxi: dict[str, Any] | None, ours: dict[str, Sequence[dict[str, Any]]], out: Path) -> None:
    """Validation NDCG@10 per domain against epoch (top) and cumulative training seconds (bottom), ABXI (black)
    beside each of ``ours`` ({"<variant> s<seed>": curve}: one colour per variant, a thin line per seed); one legend
    entry per variant, below the panels, so the curves stay visible; writes ``out``."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    curves = dict(ours)
    if abxi is not None:
        curves = {"ABXI (peer)": abxi["curve"], **curves}
    variants = list(dict.fromkeys(label.rsplit(" s", 1)[0] for label in curves))
    colours = {
        v: ("black" if v == "ABXI (peer)" else plt.get_cmap("tab20")(i % 20)) for i, v in enumerate(variants)
    }
    domains = sorted({d for c in curves.values() for row in c for d in row.get("valid", {})})
    fig, axes = plt.subplots(
        2, max(1, len(domains)), figsize=(5.5 * max(1, len(domains)), 7.5), squeeze=False
    )
    handles: dict[str, Any] = {}
    for j, dom in enumerate(domains):
        for label, curve in curves.items():
            pts = [
                (c["epoch"], c["train_s_cum"], c["valid"][dom]) for c in curve if dom in c.get("valid", {})
            ]
            if not pts:
                continue
            e, t, v = zip(*pts, strict=True)
            variant = label.rsplit(" s", 1)[0]
            style = {"color": colours[variant], "lw": 2.0 if variant == "ABXI (peer)" else 0.8, "alpha": 0.9}
            (line,) = axes[0][j].plot(e, v, marker="." if variant == "ABXI (peer)" else None, **style)
            axes[1][j].plot(t, v, marker="." if variant == "ABXI (peer)" else None, **style)
            handles.setdefault(variant, line)
        axes[0][j].set_xlabel("epoch")
        axes[1][j].set_xlabel("training seconds (1 thread)")
        axes[1][j].set_xscale("log")
        # plain numbers at 1, 2, 5 × 10^k: matplotlib's default minor labels of a short log range overlapped
        axes[1][j].xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes[1][j].xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        axes[1][j].xaxis.set_minor_formatter(NullFormatter())
        for i in range(2):
            axes[i][j].set_ylabel(f"valid NDCG@10, domain {dom}")
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            ncol=min(4, len(handles)),
            fontsize=7,
            frameon=False,
        )
    rows = -(-len(handles) // 4) if handles else 0
    fig.tight_layout(rect=(0, min(0.45, 0.03 * rows + 0.01), 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)

"""Choosing a CTR benchmark job's settings on validation (the L2 weight, then dropout) and reusing earlier runs.

Split out of ``bench_ctr.py`` (which re-exports these names): the grids run a job on ``(train, valid, valid)`` at
one or more model seeds (the grid seeds) and rank each grid point by its validation logloss averaged over them, so
the test split is never read; the seeds then run with the chosen values. Jobs are
``(library, spec, run function)``; a run function takes ``(spec, splits, seed, settings)`` and returns a dict with
at least ``valid_logloss``, ``valid_auc``, ``best_epoch`` and ``epochs_run``. Settings are ``bench_ctr.BenchSettings``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

Job = tuple[str, str, Callable[..., dict[str, Any]]]
#: earlier runs by (``"<dataset>/<library>/<model>"``, L2 weight, seed)
RunCache = dict[tuple[str, float, int], dict[str, Any]]
#: settings that may differ between a cached run and this one (the baseline's cap: each run's own cap is checked,
#: :func:`cached`, so a record's other models are still reused when only LR's cap changed)
_FREE_SETTINGS = ("embedding_reg", "fuxictr_zoo", "baseline_max_epochs")
#: the model every goal compares against ("every model's test logloss <= LR's"); it gets its own epoch cap
BASELINE = "lr"


def epoch_cap(name: str, s: Any, library: str = "attnrec") -> int:
    """The epoch cap of model ``name`` of ``library`` under settings ``s`` (a ``BenchSettings`` or a record's
    settings dict): ``baseline_max_epochs`` for attnrec's :data:`BASELINE` when set, else ``max_epochs`` (every
    other model and every peer)."""

    def get(k: str) -> Any:
        return s.get(k) if isinstance(s, dict) else getattr(s, k, None)

    base = get("baseline_max_epochs")
    if library == "attnrec" and name == BASELINE and base is not None:
        return int(base)
    return int(get("max_epochs"))


def _job_cap(key: str, s: Any) -> int:
    """:func:`epoch_cap` of the job ``"<dataset>/<library>/<spec>"`` (a spec: a model name with ``:k=v`` overrides)."""
    _, library, spec = key.split("/", 2)
    return epoch_cap(spec.split(":", 1)[0], s, library)


#: settings added after records were written, with the value every record without them ran under
ADDED_SETTINGS: dict[str, Any] = {
    "resplit": False,
    "linear_reg": None,
    "linear_init": "zero",
    "validate_start": False,
    "baseline_max_epochs": None,
}


def _matching_records(paths: Sequence[Path], s: Any) -> list[tuple[Path, dict[str, Any]]]:
    """The records at ``paths``, each checked to have been made with ``s``'s settings (all but those in
    ``_FREE_SETTINGS``); one with other settings raises SystemExit naming the settings that differ."""
    out = []
    for path in paths:
        record = json.loads(Path(path).read_text())
        diff = settings_diff(record["settings"], asdict(s))
        if diff:
            raise SystemExit(f"--reuse {path}: its settings differ from this run's in {diff}")
        out.append((Path(path), record))
    return out


def settings_diff(theirs: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """The settings (sorted names) of ``mine`` in which a record's ``theirs`` differs, leaving out
    ``_FREE_SETTINGS``; a key the record lacks counts as different unless it is in ``ADDED_SETTINGS`` and ``mine``
    has the value listed there."""

    def differs(k: str) -> bool:
        if k in theirs:
            return bool(theirs[k] != mine[k])
        return k not in ADDED_SETTINGS or ADDED_SETTINGS[k] != mine[k]

    return sorted(k for k in mine if k not in _FREE_SETTINGS and differs(k))


def load_grid_scores(paths: Sequence[Path], s: Any) -> RunCache:
    """The validation scores of earlier records' grid runs (``l2_grid`` and ``dropout_grid``), keyed as
    :func:`load_reuse` keys runs: by the grid seed of each run (a grid point's ``by_seed``; in records before it, the
    record's ``grid_seed``, or 0 before that was stored: the option's default, which every such record used). For
    the grid only: these runs never read test."""
    cache: RunCache = {}
    for _, record in _matching_records(paths, s):
        seed = int(record.get("grid_seed", 0))
        for part in ("l2_grid", "dropout_grid"):
            for by_key in record.get(part, {}).values():
                for key, by_value in by_key.items():
                    for value, point in by_value.items():
                        for run_seed, row in point.get("by_seed", {str(seed): point}).items():
                            reg = float(row.get("embedding_reg", point.get("embedding_reg", value)))
                            spec_key = row.get("spec_key", point.get("spec_key", key))
                            capped = {"max_epochs": _job_cap(spec_key, record["settings"]), **row}
                            cache[(spec_key, reg, int(run_seed))] = capped
    return cache


def load_reuse(paths: Sequence[Path], s: Any) -> RunCache:
    """The runs of earlier records (``--out`` files of this script) made with the same settings as ``s`` (all but
    the L2 weight, which keys the run): training on CPU is deterministic for a seed, so such a run is what a rerun
    would give (checked: a rerun of the 2026-12-06 01:41 Avazu record at L2 0, seed 0, gave the same validation
    logloss and epochs for all eight models compared). A record with other settings raises SystemExit."""
    cache: RunCache = {}
    for _, record in _matching_records(paths, s):
        for key, r in record["results"].items():
            reg = float(r.get("embedding_reg", record["settings"]["embedding_reg"]))
            for run in r["runs"]:
                # a run from before runs recorded their cap ran under its record's single cap
                cache[(key, reg, int(run["seed"]))] = {"max_epochs": _job_cap(key, record["settings"]), **run}
    return cache


def cached(cache: RunCache | None, key: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``cache[(key, L2, seed)]`` when present and run under this job's epoch cap (args = model, splits, seed,
    settings; :func:`epoch_cap`: e.g. an LR run capped at 30 is not reused under a baseline cap of 200), else
    ``fn(*args)``."""
    _, _, seed, s = args
    hit = (cache or {}).get((key, float(s.embedding_reg), int(seed)))
    if hit is not None and int(hit.get("max_epochs", _job_cap(key, s))) != _job_cap(key, s):
        hit = None
    return {**hit, "reused": True} if hit is not None else fn(*args)


def select_l2(
    ds: str,
    jobs: Sequence[Job],
    splits: Any,
    grid: Sequence[float],
    grid_seeds: tuple[int, ...],
    s: Any,
    log: Callable[[str], None] = print,
    cache: RunCache | None = None,
    peer_grid: Sequence[float] | None = None,
    extend: Sequence[float] = (),
) -> tuple[dict[str, float], dict[str, Any]]:
    """Choose each job's L2 weight (attnrec's ``embedding_reg``, the peers' embedding regulariser) from ``grid``
    (the peers': ``peer_grid``, of the same size, default ``grid``) by the lowest validation logloss of the restored
    epoch, averaged over one run per model seed in ``grid_seeds`` (:func:`grid_point`). The two weights are
    different penalties (attnrec: the squares of the rows a batch uses, averaged over its rows; the peers: whole tables), so their scales may differ.

    ``extend`` (ascending, above the grid; attnrec jobs only): an attnrec job whose lowest validation logloss is at
    the largest value tried so far also runs the next value, until one does not improve on it or the values run
    out — the grid widened only where its top edge won.

    The test split is never touched: the runs get ``(train, valid, valid)``. Returns ``({key: chosen value},
    {key: {value: grid point}})`` (:func:`grid_point`'s rows) with keys ``"<dataset>/<library>/<model>"``.
    """
    peer_grid = grid if peer_grid is None else peer_grid
    if len(peer_grid) != len(grid):
        raise SystemExit(f"the peers' L2 grid {list(peer_grid)} is not the size of attnrec's {list(grid)}")
    scores: dict[str, dict[str, Any]] = {f"{ds}/{lib}/{m}": {} for lib, m, _ in jobs}
    for ours, theirs in zip(grid, peer_grid, strict=True):  # interleaved over the jobs, as the seeds are
        for lib, m, fn in jobs:
            value = ours if lib == "attnrec" else theirs
            row = grid_point(ds, lib, m, fn, splits, grid_seeds, replace(s, embedding_reg=value), log, cache)
            scores[f"{ds}/{lib}/{m}"][repr(value)] = row
    for value in extend:
        for lib, m, fn in jobs:
            by_value = scores[f"{ds}/{lib}/{m}"]
            top = max(by_value, key=float)
            if lib != "attnrec" or float(value) <= float(top) or _best(by_value) != top:
                continue
            row = grid_point(ds, lib, m, fn, splits, grid_seeds, replace(s, embedding_reg=value), log, cache)
            by_value[repr(float(value))] = row
    chosen = {key: float(_best(by_value)) for key, by_value in scores.items()}
    return chosen, scores


def _best(by_value: dict[str, dict[str, Any]]) -> str:
    """The grid entry with the lowest validation logloss (ties: the first tried). A NaN logloss (a diverged run,
    or a run whose best-valid scores lack it) ranks below every number, so it is chosen only if all are NaN."""

    def rank(v: str) -> tuple[bool, float]:
        x = float(by_value[v]["valid_logloss"])
        return (math.isnan(x), x)

    return min(by_value, key=rank)


def check_grid_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """``seeds`` as the tuple of grid seeds the grids take; an empty one or a repeated seed raises SystemExit (a
    repeat would be recorded as a second seed while the mean runs over one)."""
    seeds = tuple(int(x) for x in seeds)
    if not seeds:
        raise SystemExit("the grids need at least one grid seed")
    repeated = sorted({x for x in seeds if seeds.count(x) > 1})
    if repeated:
        raise SystemExit(f"--grid-seeds {','.join(map(str, seeds))}: seed(s) {repeated} given more than once")
    return seeds


def mean_point(rows: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """One grid point from its runs ``{grid seed: grid_run row}``: ``valid_logloss`` and ``valid_auc`` averaged over
    the seeds (a NaN in any run makes the mean NaN, which :func:`_best` ranks last), ``best_epoch`` / ``epochs_run``
    per seed (lists; an int for one seed, as before grid seeds were several), ``grid_seeds`` and ``by_seed`` (the
    runs, keyed by seed as a string)."""
    seeds = list(rows)
    first = rows[seeds[0]]
    out: dict[str, Any] = {
        k: math.fsum(float(rows[x][k]) for x in seeds) / len(seeds) for k in ("valid_logloss", "valid_auc")
    }
    for k in ("best_epoch", "epochs_run"):
        out[k] = first[k] if len(seeds) == 1 else [rows[x][k] for x in seeds]
    return {
        **out,
        "embedding_reg": first["embedding_reg"],
        "spec_key": first["spec_key"],
        "grid_seeds": seeds,
        "by_seed": {str(x): rows[x] for x in seeds},
    }


def grid_point(
    ds: str,
    lib: str,
    spec: str,
    fn: Callable[..., dict[str, Any]],
    splits: Any,
    grid_seeds: tuple[int, ...],
    s: Any,
    log: Callable[[str], None],
    cache: RunCache | None,
) -> dict[str, Any]:
    """Job ``spec`` at settings ``s``, one :func:`grid_run` per seed of ``grid_seeds`` (test unread), scored by
    :func:`mean_point` (the mean validation logloss over the seeds)."""
    seeds = check_grid_seeds(grid_seeds)
    point = mean_point({seed: grid_run(ds, lib, spec, fn, splits, seed, s, log, cache) for seed in seeds})
    if len(seeds) > 1:
        log(
            f"grid {point['spec_key']} L2 {s.embedding_reg:g}: mean over seeds {seeds}: valid logloss "
            f"{point['valid_logloss']:.4f} AUC {point['valid_auc']:.4f}"
        )
    return point


def grid_run(
    ds: str,
    lib: str,
    spec: str,
    fn: Callable[..., dict[str, Any]],
    splits: Any,
    grid_seed: int,
    s: Any,
    log: Callable[[str], None],
    cache: RunCache | None,
) -> dict[str, Any]:
    """One grid run of job ``spec`` at seed ``grid_seed`` with settings ``s`` on ``(train, valid, valid)`` (test
    unread), or its cached scores: ``{valid_logloss, valid_auc, best_epoch, epochs_run, embedding_reg, spec_key}``
    (and ``reused``: True when cached)."""
    train, valid, _ = splits
    key = f"{ds}/{lib}/{spec}"
    row = cached(cache, key, fn, spec, (train, valid, valid), grid_seed, s)
    out = {k: row[k] for k in ("valid_logloss", "valid_auc", "best_epoch", "epochs_run")}
    log(
        f"grid {key} L2 {s.embedding_reg:g} seed {grid_seed}: valid logloss {out['valid_logloss']:.4f} "
        f"AUC {out['valid_auc']:.4f} epochs {out['epochs_run']} (best {out['best_epoch']})"
    )
    reused = {"reused": True} if row.get("reused") else {}  # the record says which grid runs were not rerun
    return {**out, "embedding_reg": float(s.embedding_reg), "spec_key": key, **reused}


def select_dropout(
    ds: str,
    jobs: Sequence[Job],
    splits: Any,
    grid: Sequence[float],
    spec_of: Callable[[str, float, Any], str | None],
    l2: dict[str, float],
    l2_scores: dict[str, Any],
    grid_seeds: tuple[int, ...],
    s: Any,
    log: Callable[[str], None] = print,
    cache: RunCache | None = None,
    extend: Sequence[float] = (),
) -> tuple[list[Job], dict[str, float], dict[str, Any]]:
    """Choose each attnrec job's dropout from ``grid`` at its chosen L2 (``l2``), by the
    lowest validation logloss averaged over the seeds ``grid_seeds`` (:func:`grid_point`); the model's own setting
    competes with its score from ``l2_scores`` (the L2 grid's run at the chosen value). ``spec_of(model, value, s)`` is the job's spec at that
    dropout, None where the model has none or already runs with it (``bench_ctr.dropout_spec``). Test unread, as in
    :func:`select_l2`.

    ``extend`` (ascending, above the grid), as ``select_l2``'s: a job whose lowest mean validation logloss is at the
    largest dropout tried so far also runs the next value, until one does not improve on it or the values run out.
    The model's own setting counts as the grid value it equals (``spec_of`` gives None there); an own setting
    outside the grid is never the largest, so its win extends nothing.

    Returns ``(jobs with the chosen specs, {new key: L2}, {old key: {spec: scores}})``; other jobs are unchanged."""
    out_jobs: list[Job] = []
    out_l2: dict[str, float] = {}
    scores: dict[str, Any] = {}
    for lib, m, fn in jobs:
        key = f"{ds}/{lib}/{m}"
        specs = [x for v in grid if (x := spec_of(m, v, s)) is not None] if lib == "attnrec" else []
        if not specs:
            out_jobs.append((lib, m, fn))
            out_l2[key] = l2[key]
            continue
        at = replace(s, embedding_reg=l2[key])
        by_spec = {
            m: l2_scores.get(key, {}).get(repr(l2[key]))
            or grid_point(ds, lib, m, fn, splits, grid_seeds, at, log, cache)
        }
        for spec in specs:
            by_spec[spec] = grid_point(ds, lib, spec, fn, splits, grid_seeds, at, log, cache)
        # each grid value's spec (the own setting where it equals the value), to find the largest value tried
        spec_at = {float(v): spec_of(m, v, s) or m for v in grid}
        for value in extend:
            top = max(spec_at)
            if float(value) <= top or _best(by_spec) != spec_at[top]:
                break
            spec_at[float(value)] = spec = spec_of(m, value, s) or m
            if spec not in by_spec:
                by_spec[spec] = grid_point(ds, lib, spec, fn, splits, grid_seeds, at, log, cache)
            log(f"# {key}: dropout grid extended to {value:g} (its top won on validation)")
        scores[key] = by_spec
        best = _best(by_spec)
        log(f"# {key}: dropout chosen on validation: {best}")
        out_jobs.append((lib, best, fn))
        out_l2[f"{ds}/{lib}/{best}"] = l2[key]
    return out_jobs, out_l2, scores

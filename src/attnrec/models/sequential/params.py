"""Parameter counts of sequential models for any config, and the parameter-matched baseline of a gca model.

The GCA paper's scaling claim compares a backbone + GCA modules with the *same backbone* enlarged to the same
parameter count. :func:`matched_baseline` builds that config: gca with ``positions=[]`` (the backbone alone),
widened until its count is within ``tolerance`` (2%) of the GCA model's. Counts are taken on the meta device (no
memory is allocated), so any size can be asked for.

From the shell::

    python -m attnrec.models.sequential.params --model gca --n-items 28095 --set positions=[0,1,2] --match
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Literal

import torch

from attnrec.errors import ConfigError
from attnrec.models.base import get_model_class
from attnrec.models.sequential.base import SequentialRecommender

#: the item count of ABXI's Food-Kitchen data (11,837 + 16,258): the default for the study's counts
FOOD_KITCHEN_ITEMS = 28_095


def count_parameters(
    model: str, config: dict[str, Any], n_items: int, domain_names: tuple[str, ...] = ("A", "B")
) -> int:
    """Trainable parameters of sequential ``model`` (a registered name) with ``config`` over ``n_items`` items
    and ``domain_names`` (gca needs two)."""
    cls = get_model_class(model)
    if not issubclass(cls, SequentialRecommender):
        raise ConfigError(f"count_parameters: {model!r} is not a sequential model")
    est = cls(**config)
    est.check_domains(domain_names)
    est.domain_names = domain_names
    with torch.device("meta"):
        module = est.new_module(n_items, len(domain_names))
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def matched_baseline(
    config: dict[str, Any],
    n_items: int,
    *,
    tolerance: float = 0.02,
    widen: Literal["dim", "ffn"] = "dim",
) -> dict[str, Any]:
    """The parameter-matched baseline of the gca model ``config``: the same backbone (``positions=[]``), widened
    until its parameter count is within ``tolerance`` of the GCA model's.

    ``widen="dim"``: the model width d is raised in steps of ``heads`` to the count closest to the target (each
    step adds about ``n_items`` · heads parameters), then the feed-forward width is solved for to close the rest.
    ``widen="ffn"``: d is kept and only the feed-forward width grows. Returns ``{"config", "params", "target",
    "relative_gap"}`` (gap = baseline / target - 1); a :class:`ConfigError` if no width gets within ``tolerance``."""
    target = count_parameters("gca", config, n_items)
    base = {**config, "positions": []}
    heads = int(base.get("heads", 2))
    dim = int(base.get("dim", 64))
    if widen == "dim":
        best = (abs(count_parameters("gca", base, n_items) - target), dim)
        d = dim
        while True:
            d += heads
            n = count_parameters("gca", {**base, "dim": d}, n_items)
            if abs(n - target) < best[0]:
                best = (abs(n - target), d)
            if n > target:
                break
        base["dim"] = best[1]
    count = count_parameters("gca", base, n_items)
    # the count is linear in the feed-forward width: solve for the width that closes the rest of the gap
    f0 = int(base.get("ffn_dim") or base.get("dim", dim))
    n0 = count_parameters("gca", {**base, "ffn_dim": f0}, n_items)
    n1 = count_parameters("gca", {**base, "ffn_dim": f0 + 1}, n_items)
    f = max(1, f0 + round((target - n0) / (n1 - n0)))
    refined = count_parameters("gca", {**base, "ffn_dim": f}, n_items)
    if abs(refined - target) < abs(count - target):
        base["ffn_dim"], count = f, refined
    gap = count / target - 1
    if abs(gap) > tolerance:
        raise ConfigError(
            f"matched_baseline: the closest backbone has {count} parameters, {gap:+.1%} from the GCA model's {target}"
        )
    return {"config": base, "params": count, "target": target, "relative_gap": gap}


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the parameter count of a config (and, with ``--match``, its matched baseline) as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m attnrec.models.sequential.params", description=main.__doc__
    )
    parser.add_argument("--model", default="gca")
    parser.add_argument("--n-items", type=int, default=FOOD_KITCHEN_ITEMS)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config field (JSON value)"
    )
    parser.add_argument("--match", action="store_true", help="also the parameter-matched baseline (gca only)")
    parser.add_argument("--widen", choices=("dim", "ffn"), default="dim")
    args = parser.parse_args(argv)
    config = _parse_set(args.set)
    out: dict[str, Any] = {"model": args.model, "config": config}
    out["params"] = count_parameters(args.model, config, args.n_items)
    if args.match:
        out["matched_baseline"] = matched_baseline(config, args.n_items, widen=args.widen)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

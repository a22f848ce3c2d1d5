"""Run the ``attnrec`` command line in-process from a test, as a user would type it."""

from __future__ import annotations

import sys
from typing import Any


def run_cli(args: list[str], monkeypatch: Any, capsys: Any) -> tuple[int, str, str]:
    """``attnrec ARGS`` in this process (pytest's ``monkeypatch`` sets ``sys.argv``, ``capsys`` captures the
    output): ``(exit code, stdout, stderr)``; an error exits 2 with its one line on stderr."""
    from attnrec.cli import main

    monkeypatch.setattr(sys, "argv", ["attnrec", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def recommend_share_in_group(model_dir: Any, out_dir: Any, monkeypatch: Any, capsys: Any) -> float:
    """``attnrec recommend --users u0,u1 --k 5`` from a bundle trained on the planted two-group data (user ``u<g>``
    and item ``i<n>`` in group ``n % 2``): the share of the 10 recommendations in the user's own group (chance 0.5).
    Asserts the command ran and returned 10 rows."""
    from pathlib import Path

    import polars as pl

    recs_path = Path(out_dir) / "recs.csv"
    args = [
        "recommend",
        "--model-dir",
        str(model_dir),
        "--users",
        "u0,u1",
        "--k",
        "5",
        "--out",
        str(recs_path),
    ]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    recs = pl.read_csv(recs_path, infer_schema=False)
    assert recs.height == 10, recs
    group = {"u0": 0, "u1": 1}
    hits = [int(i[1:]) % 2 == group[u] for u, i in recs.select("user_id", "item_id").rows()]
    return sum(hits) / len(hits)

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

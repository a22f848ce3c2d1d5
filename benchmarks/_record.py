"""The JSON record every benchmark script prints and optionally writes: what ran, when, with which torch."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch


def write_record(bench: str, result: Any, out: Path | None, **extra: Any) -> dict[str, Any]:
    """Print ``{"bench", "command", "date", "torch", **extra, "result"}`` and write it to ``out`` when given."""
    record = {
        "bench": bench,
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        **extra,
        "result": result,
    }
    print(json.dumps(record, indent=2))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2))
    return record

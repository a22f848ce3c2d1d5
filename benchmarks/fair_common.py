"""Plumbing shared by the fair peer benchmarks (issue 12): one worker process per library, driven in turn.

Standard library only: the same module is imported by attnrec's venv and by a peer's separate venv. A worker is a
long-lived process (``serve``) that answers one JSON request per line on stdin with one JSON line on stdout; the
driver (``Worker``) starts one per library and sends them requests alternately (ours, peer, ours, peer, ...), so
the machine's load falls on both alike and only one of them computes at a time. Every worker runs at one thread.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

#: environment of every worker: one BLAS / OpenMP thread (torch's own pool is set by the worker itself)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def serve(handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Answer requests until stdin closes: ``handler(request) -> reply``, one JSON object per line each way.

    File descriptor 1 is pointed at stderr first, so that a library that prints or logs to stdout (RecBole does)
    cannot corrupt the reply stream; replies go to a private duplicate of the original stdout.
    """
    replies: TextIO = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            reply = {"ok": True, **handler(request)}
        except Exception as exc:  # the driver reports it with the request that caused it, then stops
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


class Worker:
    """A ``serve`` process started from ``python script args``; ``call`` sends one request and waits for its reply."""

    def __init__(self, name: str, python: str, script: Path, args: Sequence[str], log: Path) -> None:
        self.name = name
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "w")  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen(
            [python, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, **ONE_THREAD, "PYTHONHASHSEED": "0"},
        )

    def call(self, **request: Any) -> dict[str, Any]:
        """Send ``request`` as JSON, return the reply; raise with the worker's log path when it fails or dies."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited (rc {self._proc.poll()}); see {self._log.name}")
        reply: dict[str, Any] = json.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(
                f"worker {self.name} failed on {request}: {reply['error']} (log {self._log.name})"
            )
        return reply

    def close(self) -> None:
        """Close stdin (the worker's loop ends) and wait for the process."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)
        self._log.close()


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``grid``'s values, keys in sorted order: {"a": [1, 2], "b": [3]} -> [{a:1,b:3}, {a:2,b:3}]."""
    keys = sorted(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1; 0.0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt_pm(values: Sequence[float], digits: int = 4) -> str:
    """``"0.9123 ± 0.0004"`` for the mean ± sample std of ``values``."""
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def machine_state() -> dict[str, Any]:
    """Load averages (1, 5, 15 min), CPU count and UTC time, recorded at the start and end of a run."""
    return {
        "loadavg": list(os.getloadavg()),
        "nproc": os.cpu_count(),
        "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def record_header(bench: str) -> dict[str, Any]:
    """The first fields of every fair-benchmark record: name, exact command, date, machine state, threads."""
    return {
        "bench": bench,
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "start": machine_state(),
        "threads": 1,
    }


def write_json(record: dict[str, Any], out: Path | None) -> None:
    """Print ``record`` as one JSON line and write it (indented) to ``out`` when given; called after every stage
    so that a run stopped part-way still leaves what it measured."""
    print(json.dumps(record), flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2))

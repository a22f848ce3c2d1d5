"""The robustness harness: run the CLI on a bad input and assert the outcome the hardening issue promises.

Two ways to run a probe:

- ``cli(args)`` runs ``attnrec.cli.main`` in this process (fast: no interpreter or torch start-up per probe). A hang is
  caught by ``faulthandler.dump_traceback_later(..., exit=True)``, which kills the test process with every thread's stack:
  loud in CI, never a silent wait. Any exception other than ``SystemExit`` escaping ``main`` is a crash and is recorded.
- ``cli_process(args)`` runs ``python -m attnrec.cli`` in a child process under a wall-clock timeout, for the probes
  whose failure mode is a native abort or a hang (tampered tensors, FIFOs): the test sees the exit signal.

``assert_clean_error(probe, *fragments)`` is the outcome for bad input: non-zero exit, no traceback, one error line that
names every fragment (file, line, field or value). ``assert_nothing_partial(path)`` checks that no temporary or
half-written file is left behind.
"""

from __future__ import annotations

import faulthandler
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from attnrec.cli import main

# Default per-probe limit; a probe that needs longer says so.
PROBE_TIMEOUT_S = 60.0


@dataclass
class Probe:
    """The outcome of one CLI run: exit code, captured streams and, when main() let one escape, the exception."""

    args: list[str]
    code: int
    out: str
    err: str
    crash: str | None = None  # a formatted traceback of an exception other than SystemExit

    @property
    def text(self) -> str:
        return self.out + self.err


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Probe]:
    """Run ``attnrec ARGS`` in-process; returns a Probe. Wide console so Rich never wraps an error line."""
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("NO_COLOR", "1")

    def run(args: list[str | Path], timeout: float = PROBE_TIMEOUT_S) -> Probe:
        argv = [str(a) for a in args]
        monkeypatch.setattr(sys, "argv", ["attnrec", *argv])
        code, crash = 0, None
        faulthandler.dump_traceback_later(timeout, exit=True, file=sys.__stderr__)
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - a probe records any escaping exception as a crash
            code, crash = 1, traceback.format_exc()
        finally:
            faulthandler.cancel_dump_traceback_later()
        captured = capsys.readouterr()
        return Probe(argv, code, captured.out, captured.err, crash)

    return run


def cli_process(
    args: list[str | Path],
    *,
    timeout: float = PROBE_TIMEOUT_S,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Probe:
    """Run ``python -m attnrec.cli ARGS`` in a child process; a timeout or a signal fails the calling test."""
    argv = [str(a) for a in args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400", "NO_COLOR": "1", **(env or {})}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "attnrec.cli", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=full_env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"hang: `attnrec {' '.join(argv)}` ran past {timeout:.0f} s")
    if done.returncode < 0:
        pytest.fail(
            f"native crash: `attnrec {' '.join(argv)}` died of signal {-done.returncode}\n{done.stderr[-2000:]}"
        )
    return Probe(argv, done.returncode, done.stdout, done.stderr)


def assert_clean_error(probe: Probe, *fragments: str) -> str:
    """Bad input: non-zero exit, no traceback, one ``error:`` line naming every fragment. Returns that line."""
    where = f"`attnrec {' '.join(probe.args)}`"
    assert probe.crash is None, f"{where} crashed:\n{probe.crash}"
    assert "Traceback (most recent call last)" not in probe.text, (
        f"{where} printed a traceback:\n{probe.text[-3000:]}"
    )
    assert probe.code != 0, f"{where} exited 0 on bad input:\n{probe.text[-2000:]}"
    lines = [ln for ln in probe.err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith(("error", "usage", "try ", "│", "╭", "╰"))]
    message = " ".join(ln.strip(" │╭╮╰╯─") for ln in errors) or " ".join(lines)
    assert message, f"{where} failed with no message (exit {probe.code})"
    for frag in fragments:
        assert frag.lower() in message.lower(), f"{where}: error does not name {frag!r}:\n{probe.err[-2000:]}"
    return message


def assert_ok(probe: Probe) -> None:
    """A correct outcome: exit 0, no crash, no traceback."""
    where = f"`attnrec {' '.join(probe.args)}`"
    assert probe.crash is None, f"{where} crashed:\n{probe.crash}"
    assert probe.code == 0, f"{where} exited {probe.code}:\n{probe.text[-3000:]}"
    assert "Traceback (most recent call last)" not in probe.text


PARTIAL_MARKERS = (".tmp", ".partial", ".part", "~")


def assert_nothing_partial(root: Path) -> None:
    """No temporary or half-written file anywhere under ``root`` (atomic writes leave none)."""
    if not root.exists():
        return
    left = [p for p in root.rglob("*") if any(m in p.name for m in PARTIAL_MARKERS)]
    assert not left, f"half-written files left under {root}: {left}"

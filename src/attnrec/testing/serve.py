"""``attnrec serve`` as a real process for tests: started on a free port of 127.0.0.1, waited for until
``GET /ready`` answers 200, stopped (SIGTERM, then kill) at the end. Standard library only, so it imports without
the ``serve`` extra; the process itself needs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from attnrec.errors import AttnrecError


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ServerProcess:
    """A running ``attnrec serve``: its base URL (``http://127.0.0.1:PORT``), process and log file."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def _ready(url: str, headers: Mapping[str, str]) -> bool:
    req = urllib.request.Request(url + "/ready", headers=dict(headers))
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False  # not listening yet, or not ready (503)


@contextmanager
def serve_process(
    args: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 180.0,
) -> Iterator[ServerProcess]:
    """Run ``attnrec serve ARGS --host 127.0.0.1 --port FREE`` (one torch thread unless ``args`` say otherwise),
    yield it once ``/ready`` is 200 (with ``headers``, e.g. the API key), stop it on exit.

    ``env`` is added to this process's environment; the server's output goes to ``log``. An exit or a ``timeout_s``
    without readiness raises :class:`~attnrec.errors.AttnrecError` with the log's tail.
    """
    port = free_port()
    threads = [] if "--threads" in args else ["--threads", "1"]
    cmd = [sys.executable, "-m", "attnrec.cli", "serve", *args, "--host", "127.0.0.1", "--port", str(port)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen([*cmd, *threads], stdout=out, stderr=subprocess.STDOUT, env=full_env)
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + timeout_s
        while not _ready(server.url, headers or {}):
            if proc.poll() is not None:
                raise AttnrecError(f"attnrec serve exited with {proc.returncode}:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise AttnrecError(f"attnrec serve was not ready in {timeout_s:.0f} s:\n{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

"""`attnrec serve` as a real uvicorn process on 127.0.0.1 (a free port; attnrec.testing.serve starts and stops it):
it binds loopback by default, answers over HTTP with the API key from the environment, reloads on SIGHUP while
requests keep flowing (none fails), and shuts down gracefully on SIGTERM."""

from __future__ import annotations

import inspect
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

for _mod in ("fastapi", "httpx", "prometheus_client", "uvicorn"):
    pytest.importorskip(
        _mod, reason=f"the serve extra is not installed ({_mod}): pip install 'attnrec[serve]'"
    )

import httpx  # noqa: E402

from attnrec.serving.cli import serve_cmd  # noqa: E402
from attnrec.testing.serve import serve_process  # noqa: E402

AUTH = {"Authorization": "Bearer process-key"}


@pytest.fixture(scope="module")
def server(
    serve_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    args = [
        str(serve_bundles["svd"]),
        "--model",
        f"bpr={serve_bundles['bpr']}",
        "--api-key-env",
        "ATTNREC_TEST_KEY",
    ]
    with serve_process(args, log=log, env={"ATTNREC_TEST_KEY": "process-key"}, headers=AUTH) as srv:
        yield srv.url, srv.proc, log


def test_the_default_bind_is_loopback() -> None:
    # the process below is started with --host 127.0.0.1 by the helper; the default is checked here
    assert inspect.signature(serve_cmd).parameters["host"].default == "127.0.0.1"


def test_serves_over_http_on_loopback(server: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    base, _, _ = server
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}
    assert httpx.post(f"{base}/recommend", json={"user_id": "1"}).status_code == 401
    r = httpx.post(f"{base}/recommend", json={"user_id": "1", "k": 3}, headers=AUTH)
    assert r.status_code == 200 and r.json()["model"] == "default" and len(r.json()["items"]) == 3
    r = httpx.post(f"{base}/models/bpr/recommend", json={"items": ["1", "2"], "k": 2}, headers=AUTH)
    assert r.status_code == 200 and r.json()["path"] == "history"
    assert httpx.get(f"{base}/models", headers=AUTH).json()["default"] == "default"
    # bound to 127.0.0.1 only: another local address of this machine is refused (where there is one)
    others = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    others = {a for a in others if not a.startswith("127.")}
    port = int(base.rsplit(":", 1)[1])
    for addr in others:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://{addr}:{port}/health", timeout=2)


def test_sighup_reloads_with_no_failed_request(server: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    base, proc, _ = server
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=base, headers=AUTH, timeout=10) as c:
            while not stop.is_set():
                try:
                    statuses.append(
                        c.post("/models/bpr/recommend", json={"user_id": "4", "k": 5}).status_code
                    )
                except httpx.TransportError:
                    statuses.append(-1)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    before = httpx.get(f"{base}/models", headers=AUTH).json()["reloads"]
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while httpx.get(f"{base}/models", headers=AUTH).json()["reloads"] == before:
        assert time.monotonic() < deadline, "no reload 30 s after SIGHUP"
        time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert len(statuses) > 5 and set(statuses) == {200}
    metrics = httpx.get(f"{base}/metrics", headers=AUTH).text
    assert 'attnrec_reloads_total{outcome="ok"}' in metrics
    assert proc.poll() is None


def test_sigterm_stops_it(server: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    base, proc, log = server
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM)
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    assert "Finished server process" in log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/health", timeout=2)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--model", "no-equals-sign"], {}, "expected NAME=DIR"),
        (["--model", "a=x", "--model", "a=y"], {}, "given twice"),
        (["--model", "a=x", "--model", " a=y"], {}, "given twice"),  # the name as served, stripped
        (["BUNDLE", "--model", "default =y"], {}, "given twice"),
        ([], {}, "no bundle to serve"),
        (["BUNDLE", "--api-key-env", "ATTNREC_UNSET_KEY"], {}, "ATTNREC_UNSET_KEY"),
        (["BUNDLE", "--model", "svd=/no/such/folder"], {}, "/no/such/folder"),
    ],
)
def test_serve_refuses_bad_options_in_one_line(
    args: list[str],
    env: dict[str, str],
    message: str,
    serve_bundles: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sys

    from attnrec.cli import main

    monkeypatch.delenv("ATTNREC_UNSET_KEY", raising=False)
    argv = [str(serve_bundles["svd"]) if a == "BUNDLE" else a for a in args]
    monkeypatch.setattr(sys, "argv", ["attnrec", "serve", *argv, "--port", "1"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "error:" in err and message in err.replace("\n", "")
    assert "Traceback" not in err

"""The HTTP app in-process (fastapi.testclient over httpx): every route and error, the API key, the body cap,
metrics, CORS only when configured, several models, and a hot reload under concurrent requests with no error."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

for _mod in ("fastapi", "httpx", "prometheus_client"):
    pytest.importorskip(
        _mod, reason=f"the serve extra is not installed ({_mod}): pip install 'attnrec[serve]'"
    )

from fastapi.testclient import TestClient  # noqa: E402

from attnrec.serving.app import PAGE, create_app  # noqa: E402

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def wait_ready(
    client: TestClient, headers: dict[str, str] | None = None, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/ready", headers=headers or AUTH)
        if r.status_code == 200 or time.monotonic() > deadline:
            return {"status": r.status_code, **r.json()}
        time.sleep(0.05)


@pytest.fixture(scope="module")
def client(serve_bundles: dict[str, Path]) -> Iterator[TestClient]:
    app = create_app(serve_bundles, default="svd", api_key=KEY)
    with TestClient(app) as c:
        assert wait_ready(c)["status"] == 200
        yield c


def test_health_needs_no_key_and_everything_else_does(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    for method, path, body in (
        ("GET", "/ready", None),
        ("GET", "/metrics", None),
        ("GET", "/metadata", None),
        ("GET", "/models", None),
        ("POST", "/recommend", {"user_id": "1"}),
        ("POST", "/models/bpr/recommend", {"user_id": "1"}),
        ("POST", "/admin/reload", {}),
    ):
        r = client.request(method, path, json=body)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
        wrong = client.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, path


def test_ready_reports_every_model(client: TestClient) -> None:
    got = wait_ready(client)
    assert got["ready"] and set(got["models"]) == {"svd", "bpr", "pop", "lr", "hybrid"}


def test_recommend_default_and_named_models(client: TestClient) -> None:
    r = client.post("/recommend", json={"user_id": "1", "k": 3}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "svd" and body["path"] == "known_user" and len(body["items"]) == 3
    assert body["items"][0]["title"].endswith(" " + body["items"][0]["item_id"])
    named = client.post("/models/svd/recommend", json={"user_id": "1", "k": 3}, headers=AUTH).json()
    assert named["items"] == body["items"]
    hist = client.post("/models/bpr/recommend", json={"items": ["1", "2"], "k": 2}, headers=AUTH).json()
    assert hist["path"] == "history" and hist["model"] == "bpr"
    text = client.post("/models/hybrid/recommend", json={"query": "space drama", "k": 2}, headers=AUTH).json()
    assert text["path"] == "text" and text["new_user"] and text["items"][0]["shares"]["text"] > 0
    cold = client.post("/recommend", json={"user_id": "who?", "k": 2}, headers=AUTH).json()
    assert cold["cold_start"] and cold["path"] == "new_user" and len(cold["items"]) == 2


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"user_id": "1", "k": 0}, ["body", "k"]),
        ({"user_id": "1", "k": 1001}, ["body", "k"]),
        ({"user_id": "1", "colour": "red"}, ["body", "colour"]),
        ({"user_id": 5}, ["body", "user_id"]),
        ({"k": 3}, ["body"]),
        ({"query": "x", "items": ["1"]}, ["body"]),
        ({"query": "a film"}, ["body", "query"]),  # svd takes no text
        ({"user_id": "1", "domain": "books"}, ["body", "domain"]),
    ],
)
def test_422_names_the_field(client: TestClient, body: dict[str, Any], loc: list[str]) -> None:
    r = client.post("/recommend", json=body, headers=AUTH)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail[0]["loc"] == loc and detail[0]["msg"]


def test_unknown_model_and_item_are_404(client: TestClient) -> None:
    r = client.post("/models/nope/recommend", json={"user_id": "1"}, headers=AUTH)
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = client.get("/items/no-such-item/similar", headers=AUTH)
    assert r.status_code == 404 and r.json()["field"] == "item_id"


def test_predict_pairs_rows_and_batch_limit(client: TestClient) -> None:
    r = client.post(
        "/predict",
        json={"pairs": [{"user_id": "1", "item_id": "3"}, {"user_id": "ghost", "item_id": "3"}]},
        headers=AUTH,
    )
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert r.json()["kind"] == "rating" and 1 <= preds[0]["value"] <= 5
    assert preds[1] == {"value": None, "user_id": "ghost", "item_id": "3", "cold_start": "unknown_user"}
    rows = client.post("/models/lr/predict", json={"rows": [{"site": "a", "hour": 2}]}, headers=AUTH).json()
    assert rows["kind"] == "probability" and 0 < rows["predictions"][0]["value"] < 1
    too_many = {"pairs": [{"user_id": "1", "item_id": "3"}] * 1025}
    r = client.post("/predict", json=too_many, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "pairs"]
    r = client.post("/models/lr/predict", json={"rows": [{"hour": 2}]}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "site"]


@pytest.mark.parametrize("big", [99999999999999999999999, -9223372036854775809, 2**63])
def test_predict_rows_with_an_integer_outside_int64(client: TestClient, big: int) -> None:
    # JSON integers are unbounded: one past int64 is a token like any other, never a 500
    for hour in (big, [big, 2.5]):
        rows = [{"site": "a", "hour": h} for h in (hour if isinstance(hour, list) else [hour, 3])]
        r = client.post("/models/lr/predict", json={"rows": rows}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert all(0 < p["value"] < 1 for p in r.json()["predictions"])


def test_similar_and_explain_routes(client: TestClient) -> None:
    sim = client.get("/models/bpr/items/3/similar?k=4", headers=AUTH).json()
    assert (
        sim["item_id"] == "3" and len(sim["items"]) == 4 and "3" not in [i["item_id"] for i in sim["items"]]
    )
    assert all(-1.0 - 1e-6 <= i["score"] <= 1.0 + 1e-6 for i in sim["items"])
    r = client.get("/models/pop/items/3/similar", headers=AUTH)
    assert r.status_code == 422 and "no item vectors" in r.json()["detail"][0]["msg"]
    assert client.get("/items/3/similar?k=0", headers=AUTH).status_code == 422
    ex = client.post("/models/hybrid/explain", json={"user_id": "1", "item_ids": ["1", "2"]}, headers=AUTH)
    assert ex.status_code == 200
    shares = ex.json()["explanations"][0]["shares"]
    assert shares["user"] + shares["item"] + shares["text"] == pytest.approx(1.0, abs=1e-4)
    r = client.post("/explain", json={"user_id": "1", "item_ids": ["1"]}, headers=AUTH)
    assert r.status_code == 422 and "no attention" in r.json()["detail"][0]["msg"]


def test_users_models_and_metadata(client: TestClient) -> None:
    users = client.get("/users?limit=3", headers=AUTH).json()
    assert len(users) == 3 and all(isinstance(u, str) for u in users)
    assert client.get("/models/lr/users", headers=AUTH).json() == []
    models = client.get("/models", headers=AUTH).json()
    assert models["default"] == "svd" and models["models"]["hybrid"]["query_inputs"] == ["text", "users"]
    assert models["models"]["lr"]["task"] == "ctr" and models["versions"]["fastapi"]
    meta = client.get("/metadata", headers=AUTH).json()
    assert meta["model"] == "svd" and meta["config"]["factors"] == 4 and meta["data_fingerprint"]
    # which answer POST /explain gives: the page draws hybrid_csa's token shares and asks nothing of svd
    assert meta["explain"] is False and meta["explain_kind"] is None
    hybrid = client.get("/models/hybrid/metadata", headers=AUTH).json()
    assert hybrid["explain"] is True and hybrid["explain_kind"] == "tokens"
    assert (
        models["models"]["hybrid"]["explain_kind"] == "tokens"
        and models["models"]["svd"]["explain_kind"] is None
    )


def test_body_cap_is_413(serve_bundles: dict[str, Path]) -> None:
    app = create_app({"svd": serve_bundles["svd"]}, warmup=False, max_body_bytes=4096)
    with TestClient(app) as c:
        big = {"user_id": "1", "deny": ["x" * 100] * 100}
        r = c.post("/recommend", json=big)
        assert r.status_code == 413 and "4096" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"user_id": "1", "deny": ['
            for _ in range(100):
                yield b'"' + b"x" * 100 + b'",'
            yield b'"y"]}'

        r = c.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/recommend", json={"user_id": "1"}).status_code == 200


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    def count(text: str, route: str, status: str) -> float:
        pat = rf'attnrec_http_requests_total\{{method="POST",route="{re.escape(route)}",status="{status}"\}} (\S+)'
        m = re.search(pat, text)
        return float(m.group(1)) if m else 0.0

    before = client.get("/metrics", headers=AUTH).text
    for _ in range(3):
        client.post("/models/bpr/recommend", json={"user_id": "2"}, headers=AUTH)
    client.post("/models/bpr/recommend", json={"user_id": "2", "k": -1}, headers=AUTH)
    after = client.get("/metrics", headers=AUTH)
    assert after.headers["content-type"].startswith("text/plain")
    route = "/models/{name}/recommend"
    assert count(after.text, route, "200") - count(before, route, "200") == 3
    assert count(after.text, route, "422") - count(before, route, "422") == 1
    assert "attnrec_http_request_seconds_bucket" in after.text and "attnrec_http_errors_total" in after.text
    assert "user_id" not in after.text and '"2"' not in after.text  # ids never become labels


def test_cors_only_when_configured(serve_bundles: dict[str, Path]) -> None:
    pre = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    plain = create_app({"svd": serve_bundles["svd"]}, warmup=False)
    with TestClient(plain) as c:
        r = c.post("/recommend", json={"user_id": "1"}, headers={"Origin": "https://shop.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        assert "access-control-allow-origin" not in c.options("/recommend", headers=pre).headers
    allowed = create_app({"svd": serve_bundles["svd"]}, warmup=False, cors_origins=["https://shop.example"])
    with TestClient(allowed) as c:
        r = c.options("/recommend", headers=pre)
        assert r.headers["access-control-allow-origin"] == "https://shop.example"


def test_page_is_served_when_installed(serve_bundles: dict[str, Path]) -> None:
    app = create_app({"svd": serve_bundles["svd"]}, warmup=False, api_key=KEY)
    with TestClient(app) as c:
        r = c.get("/")
        if PAGE.is_file():
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        else:
            assert r.status_code == 404 and "index.html" in r.json()["detail"]
        assert wait_ready(c)["ready"]  # without warm-up, loaded is ready


def test_many_apps_in_one_process_have_their_own_metrics(serve_bundles: dict[str, Path]) -> None:
    apps = [create_app({"pop": serve_bundles["pop"]}, warmup=False) for _ in range(2)]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        a.post("/recommend", json={"user_id": "1"})
        assert 'route="/recommend"' in a.get("/metrics").text
        assert 'route="/recommend"' not in b.get("/metrics").text


def test_reload_under_concurrent_requests_fails_none(serve_bundles: dict[str, Path]) -> None:
    app = create_app({"bpr": serve_bundles["bpr"], "svd": serve_bundles["svd"]}, api_key=KEY)
    statuses: list[int] = []
    stop = threading.Event()
    with TestClient(app) as c:
        assert wait_ready(c)["ready"]
        want = c.post("/recommend", json={"user_id": "5", "k": 5}, headers=AUTH).json()["items"]

        def hammer() -> None:
            while not stop.is_set():
                r = c.post("/recommend", json={"user_id": "5", "k": 5}, headers=AUTH)
                statuses.append(r.status_code)
                if r.status_code == 200 and r.json()["items"] != want:
                    statuses.append(-1)  # a half-swapped model would answer differently

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        fingerprints = []
        for _ in range(3):
            r = c.post("/admin/reload", json={}, headers=AUTH)
            assert r.status_code == 200 and r.json()["reloaded"] == ["bpr", "svd"]
            fingerprints.append(r.json()["fingerprints"]["bpr"])
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
        assert c.get("/models", headers=AUTH).json()["reloads"] == 3
        assert 'attnrec_reloads_total{outcome="ok"} 3.0' in c.get("/metrics", headers=AUTH).text
    assert len(statuses) > 10 and set(statuses) == {200}
    assert len(set(fingerprints)) == 1  # the same folder: the same bundle again
    r404 = create_app({"bpr": serve_bundles["bpr"]}, warmup=False)
    with TestClient(r404) as c:
        assert c.post("/admin/reload", json={"model": "svd"}).status_code == 404


def test_reload_of_a_bad_bundle_is_a_422_with_the_reason(
    serve_bundles: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    folder = Path(shutil.copytree(serve_bundles["pop"], tmp_path / "pop"))
    app = create_app({"pop": folder}, warmup=False)
    with TestClient(app) as c:
        (folder / "manifest.json").write_text("{not json")
        r = c.post("/admin/reload", json={})
        assert r.status_code == 422
        msg = r.json()["detail"][0]["msg"]
        assert "manifest.json" in msg and "invalid JSON" in msg
        folder.rename(tmp_path / "moved")
        r = c.post("/admin/reload", json={"model": "pop"})
        assert r.status_code == 422 and "no such directory" in r.json()["detail"][0]["msg"]
        assert c.post("/recommend", json={"user_id": "1"}).status_code == 200  # the old bundle serves on
        assert 'attnrec_reloads_total{outcome="failed"} 2.0' in c.get("/metrics").text


def test_serve_on_a_malformed_manifest_is_one_error_line(
    serve_bundles: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil
    import sys

    from attnrec.cli import main

    folder = Path(shutil.copytree(serve_bundles["pop"], tmp_path / "pop"))
    (folder / "manifest.json").write_text('{"format": 2,')
    monkeypatch.setattr(sys, "argv", ["attnrec", "serve", str(folder), "--port", "1"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "error:" in err and "invalid JSON" in err
    assert "manifest.json" in err.replace("\n", "") and "Traceback" not in err


def test_with_a_key_the_schema_needs_it_and_the_docs_pages_are_off(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 401
    for path in ("/docs", "/redoc"):  # these pages fetch the schema without the key: not served
        assert client.get(path).status_code == 404 and client.get(path, headers=AUTH).status_code == 404
    schema = client.get("/openapi.json", headers=AUTH)
    assert schema.status_code == 200 and "/recommend" in schema.json()["paths"]


def test_without_a_key_the_docs_pages_are_served(serve_bundles: dict[str, Path]) -> None:
    with TestClient(create_app({"pop": serve_bundles["pop"]}, warmup=False)) as c:
        assert c.get("/docs").status_code == 200 and c.get("/redoc").status_code == 200
        assert "/admin/reload" in c.get("/openapi.json").json()["paths"]


def test_reload_takes_only_a_json_body(serve_bundles: dict[str, Path]) -> None:
    # what a cross-site page can send without a CORS preflight: a form, text/plain, or a POST with no body
    simple = [
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {"content-type": "text/plain"},
        {},
    ]
    with TestClient(create_app({"pop": serve_bundles["pop"]}, warmup=False)) as c:
        for headers in simple:
            for body in (b"", b"{}"):
                r = c.post("/admin/reload", content=body, headers=headers)
                assert r.status_code == 415 and "application/json" in r.json()["detail"], (headers, body)
        assert c.get("/models").json()["reloads"] == 0
        r = c.post(
            "/admin/reload", content=b"{}", headers={"content-type": "application/json; charset=utf-8"}
        )
        assert r.status_code == 200 and c.get("/models").json()["reloads"] == 1

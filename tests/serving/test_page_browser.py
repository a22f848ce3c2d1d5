"""The page at ``GET /`` in a real browser: Debian's Chromium, headless, driven through chromedriver (Selenium),
against ``attnrec serve`` running as its own process on 127.0.0.1 with the hybrid_csa bundle of a real run.

Each test submits what a person would (a user id, a text query, bad input) and checks what the page shows
against the service's own JSON answer to the same request: the item ids and titles in order, the scores, the
attention shares behind the bars, the errors. Strings from the API go into the page as text, never as markup.

Screenshots are kept as test artefacts: under ``$ATTNREC_TEST_ARTEFACTS`` when set (CI sets it and prints the
folder), else in pytest's temporary folder; each test prints the path.

Skipped, with the reason shown, only where Chromium cannot be had: Selenium (the ``dev`` extra) or Debian's
``chromium`` / ``chromium-driver`` packages are not installed (``.ci/run`` installs them when absent).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("ATTNREC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = (
    os.environ.get("ATTNREC_CHROMEDRIVER")
    or shutil.which("chromedriver")
    or next((p for p in ("/usr/lib/chromium/chromedriver",) if Path(p).is_file()), None)
)
_missing = [
    what
    for what, ok in (
        (
            "the serve extra (pip install -e '.[serve]')",
            all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn")),
        ),
        ("selenium (pip install -e '.[dev]')", importlib.util.find_spec("selenium") is not None),
        ("chromium (apt-get install chromium)", CHROMIUM is not None),
        ("chromedriver (apt-get install chromium-driver)", CHROMEDRIVER is not None),
    )
    if not ok
]
pytestmark = pytest.mark.skipif(
    bool(_missing), reason=f"cannot run the page in a browser: missing {', '.join(_missing)}"
)

#: how long the page may take to answer one submission (a text query encodes with MiniLM on a busy machine)
WAIT_S = 60


KEY = "page-test-key"


# ------------------------------------------------------------------------------------------------ fixtures
def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    import httpx

    resp = httpx.get(url, headers=headers, timeout=WAIT_S)
    return resp.status_code, resp.json()


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    import httpx

    resp = httpx.post(url, json=body, headers=headers, timeout=WAIT_S)
    return resp.status_code, resp.json()


@pytest.fixture(scope="module")
def server(serve_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``attnrec serve`` on the hybrid_csa bundle (text queries, attention shares); yields its base URL."""
    from attnrec.testing.serve import serve_process

    bundle = serve_bundles["hybrid"]
    log = tmp_path_factory.mktemp("serve-log") / "hybrid.log"
    # the run's embedding cache (serve_bundles' ATTNREC_HOME), not the user's
    with serve_process(
        [str(bundle)], log=log, env={"ATTNREC_HOME": str(bundle.parent.parent / "home")}
    ) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def keyed_server(serve_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``attnrec serve`` on the svd bundle (no text, no attention; histories) and pop (``/models/pop/``) behind an
    API key."""
    from attnrec.testing.serve import serve_process

    log = tmp_path_factory.mktemp("serve-log") / "svd.log"
    args = [
        str(serve_bundles["svd"]),
        "--model",
        f"pop={serve_bundles['pop']}",
        "--api-key-env",
        "PAGE_TEST_KEY",
    ]
    auth = {"Authorization": f"Bearer {KEY}"}
    with serve_process(args, log=log, env={"PAGE_TEST_KEY": KEY}, headers=auth) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def safmr_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``attnrec serve`` on a tiny safmr bundle (``/explain`` gives ``feature_shares``, not token ``shares``)."""
    from attnrec.data.side import ReviewCorpus, SideInputs
    from attnrec.models.review.safmr import SAFMR
    from attnrec.serving.bundle import save_bundle
    from attnrec.testing import review_checkerboard
    from attnrec.testing.data import TINY_REVIEW_MODEL
    from attnrec.testing.serve import serve_process
    from attnrec.training.trainer import TrainerConfig

    root = tmp_path_factory.mktemp("safmr-bundle")
    train, _, _ = review_checkerboard()
    model = SAFMR(**TINY_REVIEW_MODEL)
    trainer = TrainerConfig(epochs=1, progress=False, device="cpu")
    model.fit(train, side=SideInputs(reviews=ReviewCorpus.from_split(train)), trainer=trainer)
    save_bundle(model, root / "safmr")
    with serve_process([str(root / "safmr")], log=root / "safmr.log") as srv:
        yield srv.url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium through chromedriver, both from Debian (same version); nothing is downloaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1000,1100",
        "--no-first-run",
        # nothing but the page under test may reach the network
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(arg)
    mp = pytest.MonkeyPatch()
    mp.setenv("SE_OFFLINE", "true")  # Selenium Manager, should it run, must not fetch a driver or browser
    try:
        driver = webdriver.Chrome(options=opts, service=Service(executable_path=str(CHROMEDRIVER)))
    finally:
        mp.undo()
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("ATTNREC_TEST_ARTEFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("browser-artefacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------------------------ helpers
#: what the page shows, read in the page: one entry per list item, in order
READ_LIST = """
return Array.from(document.querySelectorAll('#results > li')).map((li) => ({
  id: li.dataset.itemId,
  rank: li.querySelector('.rank').textContent,
  title: li.querySelector('.title').firstChild.textContent,
  score: li.querySelector('.score').textContent,
  shares: Object.fromEntries(Array.from(li.querySelectorAll('.bar > span')).map(
    (s) => [s.dataset.share, Number(s.dataset.value)])),
  features: Array.from(li.querySelectorAll('.fbar > span')).map((s) => Number(s.dataset.value)),
}));
"""


def open_page(driver: Any, url: str, model: str = "hybrid_csa") -> None:
    """Load the page and wait for its model line (or, behind a key, its error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    WebDriverWait(driver, WAIT_S).until(
        lambda d: (
            model in d.find_element(By.ID, "model").text or d.find_element(By.ID, "error").is_displayed()
        )
    )


def fill(driver: Any, element_id: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, element_id)
    box.clear()
    if text:
        box.send_keys(text)


def submit(driver: Any) -> str:
    """Click Recommend and wait for the page to finish (list drawn, or an error shown); return the outcome."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_element(By.ID, "results").get_attribute("data-state") in ("done", "error")
    )
    return str(driver.find_element(By.ID, "results").get_attribute("data-state"))


def shot(driver: Any, artefacts: Path, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    path = artefacts / f"{name}.png"
    driver.save_screenshot(str(path))
    with capsys.disabled():
        print(f"\nbrowser screenshot: {path}")
    return path


def assert_same_list(shown: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
    """The page's list is the API's answer: ids, titles (the id where untitled), ranks, scores to 3 decimals."""
    assert [s["id"] for s in shown] == [it["item_id"] for it in items]
    assert [s["title"] for s in shown] == [it["title"] or it["item_id"] for it in items]
    assert [s["rank"] for s in shown] == [str(it["rank"]) for it in items]
    assert [s["score"] for s in shown] == [f"{it['score']:.3f}" for it in items]


def expected_shares(shares: dict[str, float | None] | None) -> dict[str, float]:
    return {k: v for k, v in (shares or {}).items() if v is not None}


# ------------------------------------------------------------------------------------------------ tests
def test_user_query_shows_the_api_answer_with_attention_bars(
    server: str, browser: Any, artefacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, server)
    # the box suggests the known ids that start with what is typed
    fill(browser, "user-id", "5")
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.execute_script("return document.querySelectorAll('#user-options option').length") > 0
    )
    suggested = browser.execute_script(
        "return Array.from(document.querySelectorAll('#user-options option')).map((o) => o.value)"
    )
    assert (
        suggested == _get(server + "/users?limit=20&prefix=5")[1] == ["5"] + [str(u) for u in range(50, 60)]
    )

    fill(browser, "user-id", "2")
    fill(browser, "k", "5")
    assert submit(browser) == "done", browser.find_element(By.ID, "error").text
    shot(browser, artefacts, "page-user", capsys)

    status, answer = _post(server + "/recommend", {"user_id": "2", "k": 5, "exclude_seen": True})
    assert status == 200 and answer["path"] == "known_user"
    shown = browser.execute_script(READ_LIST)
    assert len(shown) == 5
    assert_same_list(shown, answer["items"])
    assert "known user" in browser.find_element(By.ID, "status").text
    assert not browser.find_element(By.ID, "error").is_displayed()

    # the bars are /explain's shares for the same user and items, one stacked bar per item
    status, why = _post(server + "/explain", {"user_id": "2", "item_ids": [s["id"] for s in shown]})
    assert status == 200
    assert [s["shares"] for s in shown] == [expected_shares(e["shares"]) for e in why["explanations"]]
    assert all(abs(sum(s["shares"].values()) - 1) < 1e-4 for s in shown)
    assert browser.find_element(By.ID, "legend").is_displayed()

    # everything the page loaded came from the service itself: no external asset
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert fetched and all(url.startswith(server + "/") for url in fetched), fetched


def test_text_query_shows_the_api_answer(
    server: str, browser: Any, artefacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, server)
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=text]").click()
    assert browser.find_element(By.ID, "text-query").is_displayed()
    fill(browser, "user-id", "")
    fill(browser, "text-query", "a comedy film")
    assert submit(browser) == "done", browser.find_element(By.ID, "error").text
    shot(browser, artefacts, "page-text", capsys)

    status, answer = _post(server + "/recommend", {"query": "a comedy film", "k": 10, "exclude_seen": True})
    assert status == 200 and answer["path"] == "text" and answer["new_user"]
    shown = browser.execute_script(READ_LIST)
    assert len(shown) == 10
    assert_same_list(shown, answer["items"])
    # a text answer's relevance and predicted rating are in each score's tooltip
    tips = [e.get_attribute("title") for e in browser.find_elements(By.CSS_SELECTOR, "#results .score")]
    assert tips[0] == (
        f"score; predicted rating {answer['items'][0]['predicted_rating']:.2f}; "
        f"text relevance {answer['items'][0]['relevance']:.2f}"
    )
    assert [s["shares"] for s in shown] == [expected_shares(it["shares"]) for it in answer["items"]]
    assert "text query" in browser.find_element(By.ID, "status").text


def test_errors_are_shown_in_the_page_and_api_strings_stay_text(
    server: str, browser: Any, artefacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, server)
    title = browser.title
    error = browser.find_element(By.ID, "error")

    # nothing typed: the page says what is missing and sends nothing
    fill(browser, "user-id", "")
    assert submit(browser) == "error"
    assert error.is_displayed() and "user id" in error.text

    # the service's 422 names the field
    fill(browser, "user-id", "2")
    fill(browser, "k", "0")
    assert submit(browser) == "error"
    assert error.is_displayed() and "422" in error.text and "k:" in error.text
    assert browser.find_elements(By.CSS_SELECTOR, "#results > li") == []  # no stale list beside an error

    # an unknown user whose id is markup: the service echoes it in its notes; the page shows it as text
    evil = '<img src=x onerror="document.title=1"><b id="bold">b</b>'
    fill(browser, "k", "3")
    fill(browser, "user-id", evil)
    assert submit(browser) == "done", error.text
    shot(browser, artefacts, "page-errors", capsys)
    status, answer = _post(server + "/recommend", {"user_id": evil, "k": 3, "exclude_seen": True})
    assert status == 200 and answer["new_user"] and answer["cold_start"]
    assert_same_list(browser.execute_script(READ_LIST), answer["items"])
    notes = browser.find_element(By.ID, "notes")
    assert notes.text == " · ".join(answer["notes"]) and evil in notes.text
    assert browser.find_elements(By.CSS_SELECTOR, "#notes *, img, #bold") == []
    assert browser.title == title != "1"
    assert "cold start" in browser.find_element(By.ID, "status").text
    assert not error.is_displayed()


def test_a_keyed_service_of_two_models_without_text(
    keyed_server: str, browser: Any, artefacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    auth = {"Authorization": f"Bearer {KEY}"}
    open_page(browser, keyed_server, "svd")
    error = browser.find_element(By.ID, "error")
    # the page itself needs no key; its API calls do: it asks for the key in the page
    assert error.is_displayed() and "API key" in error.text
    assert browser.find_element(By.ID, "api-key").is_displayed()

    fill(browser, "api-key", "wrong")
    fill(browser, "user-id", "2")
    assert submit(browser) == "error" and "refused" in error.text

    fill(browser, "api-key", KEY)
    assert submit(browser) == "done", error.text
    status, answer = _post(keyed_server + "/recommend", {"user_id": "2", "k": 10, "exclude_seen": True}, auth)
    assert status == 200 and answer["path"] == "known_user"
    shown = browser.execute_script(READ_LIST)
    assert_same_list(shown, answer["items"])
    assert all(s["shares"] == {} for s in shown)  # svd has no attention: no bars, no legend
    assert not browser.find_element(By.ID, "legend").is_displayed()
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert not any("/explain" in url for url in fetched), (
        fetched
    )  # /metadata's explain_kind is null: not asked
    assert "svd" in browser.find_element(By.ID, "model").text

    # svd takes no text: that choice is off; it takes a history given now
    assert not browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=text]").is_enabled()
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=items]").click()
    assert not browser.find_element(By.ID, "user-id").is_displayed()
    fill(browser, "history-items", "1, 3, nope")
    assert submit(browser) == "done", error.text
    shot(browser, artefacts, "page-history", capsys)
    body = {"items": ["1", "3", "nope"], "k": 10, "exclude_seen": True}
    status, answer = _post(keyed_server + "/recommend", body, auth)
    assert status == 200 and answer["path"] == "history" and answer["unknown_items"] == ["nope"]
    assert_same_list(browser.execute_script(READ_LIST), answer["items"])
    assert "nope" in browser.find_element(By.ID, "notes").text

    # the service's other bundle: picked in the page, asked under /models/pop/
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "model-select")).select_by_value("pop")
    WebDriverWait(browser, WAIT_S).until(lambda d: "pop" in d.find_element(By.ID, "model").text)
    assert browser.execute_script(READ_LIST) == []  # the other model's list is gone
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=user]").click()
    fill(browser, "user-id", "2")
    assert submit(browser) == "done", error.text
    status, answer = _post(
        keyed_server + "/models/pop/recommend", {"user_id": "2", "k": 10, "exclude_seen": True}, auth
    )
    assert status == 200 and answer["model"] == "pop"
    assert_same_list(browser.execute_script(READ_LIST), answer["items"])


def test_safmr_draws_its_feature_shares(
    safmr_server: str, browser: Any, artefacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """safmr's /explain answers feature_shares (token shares null): the page draws one column per CNN feature."""
    from selenium.webdriver.common.by import By

    status, meta = _get(safmr_server + "/metadata")
    assert status == 200 and meta["explain_kind"] == "features"
    user = _get(safmr_server + "/users?limit=1")[1][0]
    open_page(browser, safmr_server, "safmr")
    fill(browser, "user-id", user)
    fill(browser, "k", "5")
    assert submit(browser) == "done", browser.find_element(By.ID, "error").text
    shot(browser, artefacts, "page-safmr", capsys)

    status, answer = _post(safmr_server + "/recommend", {"user_id": user, "k": 5, "exclude_seen": True})
    assert status == 200 and answer["path"] == "known_user"
    shown = browser.execute_script(READ_LIST)
    assert_same_list(shown, answer["items"])
    status, why = _post(safmr_server + "/explain", {"user_id": user, "item_ids": [s["id"] for s in shown]})
    assert status == 200 and all(e["shares"] is None for e in why["explanations"])
    assert [s["shares"] for s in shown] == [{}] * len(shown)  # no token bar
    assert [s["features"] for s in shown] == [e["feature_shares"] for e in why["explanations"]]
    assert all(len(s["features"]) == meta["config"]["cnn_out"] for s in shown)
    legend = browser.find_element(By.ID, "legend")
    assert legend.is_displayed() and "review features" in legend.text

    # /explain answered through a stand-in fetch: a share that is not a number (null) draws as 0 in its own column,
    # so the columns after it keep their features' indices; an empty list names no top feature
    browser.execute_script(ODD_FEATURE_SHARES)
    assert submit(browser) == "done", browser.find_element(By.ID, "error").text
    drawn = browser.execute_script(READ_FEATURE_COLUMNS)
    assert drawn[0]["columns"] == [["0", 0.25], ["1", 0.0], ["2", 0.75]]
    assert "3 features" in drawn[0]["nums"] and "top: feature 2 0.75" in drawn[0]["nums"]
    assert drawn[1]["columns"] == [] and drawn[1]["nums"].startswith("0 features")
    assert "top" not in drawn[1]["nums"] and "-1" not in drawn[1]["nums"]


#: replaces the page's fetch: /explain's first two explanations get feature_shares [0.25, null, 0.75] and []
ODD_FEATURE_SHARES = """
const real = window.fetch;
window.fetch = async (url, init) => {
  const resp = await real(url, init);
  if (!String(url).endsWith('/explain')) return resp;
  const data = await resp.json();
  data.explanations[0].feature_shares = [0.25, null, 0.75];
  data.explanations[1].feature_shares = [];
  return new Response(JSON.stringify(data), {status: resp.status, headers: resp.headers});
};
"""

#: each listed item's feature columns ([index, share]) and the text beside them
READ_FEATURE_COLUMNS = """
return Array.from(document.querySelectorAll('#results > li')).map((li) => ({
  columns: Array.from(li.querySelectorAll('.fbar > span')).map((s) => [s.dataset.feature, Number(s.dataset.value)]),
  nums: (li.querySelector('.shares .nums') || {}).textContent || '',
}));
"""

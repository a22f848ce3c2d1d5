"""fetch / load_dataset with the network functions replaced (offline, fast); one opt-in real fetch."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import urllib.error
import zipfile
from pathlib import Path

import pytest

from attnrec.data import registry
from attnrec.data.registry import FetchError, PypiFallback, fetch, load_dataset
from attnrec.errors import DataError

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t242\t3\t881250949\n22\t377\t1\t878887116\n"
)
ITEM = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n242\tKolya\t1996\tComedy\n"
USER = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n196\t49\tM\twriter\t55105\n"
MEMBERS = {"ml-100k.inter": INTER, "ml-100k.item": ITEM, "ml-100k.user": USER}
PREFIX = "recbole/dataset_example/ml-100k/"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fake_wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, text in MEMBERS.items():
            z.writestr(PREFIX + name, text)
        z.writestr("recbole/__init__.py", "")
    return path


def grouplens_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-100k/u.data", "196\t242\t3\t881250949\n22\t377\t1\t878887116\n")
        z.writestr("ml-100k/u.user", "196|49|M|writer|55105\n")
    return buf.getvalue()


class Calls:
    def __init__(self) -> None:
        self.download = 0
        self.pip = 0


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Calls:
    """ml-100k with the publisher unreachable and pip serving a tiny fake recbole wheel."""
    calls = Calls()
    wheel = fake_wheel(tmp_path / "built.whl")
    fb = PypiFallback("recbole==1.2.1", {PREFIX + n: sha(t) for n, t in MEMBERS.items()},
                      registry.RECBOLE_ML100K.reader)  # fmt: skip
    monkeypatch.setitem(
        registry.REGISTRY, "ml-100k", dataclasses.replace(registry.REGISTRY["ml-100k"], fallback=fb)
    )

    def no_network(url: str, dest: Path, **kw: object) -> None:
        calls.download += 1
        raise urllib.error.URLError("no route to host")

    def pip(requirement: str, dest: Path, **kw: object) -> Path:
        calls.pip += 1
        assert requirement == "recbole==1.2.1"
        out = dest / "recbole-1.2.1-py3-none-any.whl"
        out.write_bytes(wheel.read_bytes())
        return out

    monkeypatch.setattr(registry, "download", no_network)
    monkeypatch.setattr(registry, "pip_download", pip)
    return calls


def test_fallback_then_cache(offline: Calls, tmp_path: Path) -> None:
    home = tmp_path / "home"
    res = fetch("ml-100k", home=home, progress=False)
    assert res.source == "pypi:recbole==1.2.1" and not res.cached
    assert (res.path / "ml-100k.inter").read_text() == INTER
    assert (offline.download, offline.pip) == (1, 1)
    again = fetch("ml-100k", home=home)
    assert again.cached and again.source == res.source and again.path == res.path
    assert (offline.download, offline.pip) == (1, 1)  # no second download of any kind
    ds = load_dataset("ml-100k", home=home)
    assert ds.name == "ml-100k" and ds.notes["fetched_from"] == "pypi:recbole==1.2.1"
    assert ds.interactions.rows() == [("196", "242", 3.0, 881250949), ("22", "377", 1.0, 878887116)]
    assert ds.items is not None and ds.items.rows() == [("242", "Kolya", 1996, ["Comedy"])]
    assert ds.users is not None and ds.users.rows() == [("196", 49, "M", "writer", "55105")]


def test_fallback_member_checksum_mismatch(
    offline: Calls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = registry.REGISTRY["ml-100k"]
    assert spec.fallback is not None
    bad = dict(spec.fallback.members, **{PREFIX + "ml-100k.item": "0" * 64})
    fb = dataclasses.replace(spec.fallback, members=bad)
    monkeypatch.setitem(registry.REGISTRY, "ml-100k", dataclasses.replace(spec, fallback=fb))
    with pytest.raises(DataError) as err:
        fetch("ml-100k", home=tmp_path)
    assert "checksum mismatch" in str(err.value) and err.value.expected == "0" * 64
    assert err.value.value == sha(ITEM) and "ml-100k.item" in str(err.value.file)


def test_no_fallback_when_disabled(offline: Calls, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="cannot download https://files.grouplens.org"):
        fetch("ml-100k", home=tmp_path, offline_fallback=False)
    assert offline.pip == 0


def test_publisher_download_checksum(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    payload = grouplens_zip()
    calls = Calls()

    def serve(url: str, dest: Path, **kw: object) -> None:
        calls.download += 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(payload)

    monkeypatch.setattr(registry, "download", serve)
    # registered checksum differs from what was served: clear error, nothing cached
    with pytest.raises(DataError) as err:
        fetch("ml-100k", home=tmp_path / "a")
    assert "checksum mismatch" in str(err.value) and err.value.expected == registry.REGISTRY["ml-100k"].sha256
    assert err.value.value == hashlib.sha256(payload).hexdigest()
    assert not list((tmp_path / "a" / "ml-100k").glob("*.zip"))
    # with the matching checksum the archive is extracted, read with the GroupLens reader, and cached
    spec = dataclasses.replace(registry.REGISTRY["ml-100k"], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(registry.REGISTRY, "ml-100k", spec)
    res = fetch("ml-100k", home=tmp_path / "b")
    assert res.source == "grouplens" and res.path.name == "ml-100k" and (res.path / "u.data").is_file()
    ds = load_dataset("ml-100k", home=tmp_path / "b")
    assert ds.interactions.rows() == [("196", "242", 3.0, 881250949), ("22", "377", 1.0, 878887116)]
    assert ds.notes["fetched_from"] == "grouplens" and calls.download == 2


def test_registry_entries() -> None:
    assert {"ml-100k", "ml-1m", "ml-latest-small"} <= set(registry.available())
    for name in ("ml-100k", "ml-1m", "ml-latest-small"):
        spec = registry.REGISTRY[name]
        assert spec.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        assert spec.sha256 is not None and len(spec.sha256) == 64
    with pytest.raises(DataError, match="unknown dataset name"):
        fetch("ml-nope")


def test_load_dataset_paths(tmp_path: Path) -> None:
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "u.data").write_text("1\t2\t3\t4\n")
    assert load_dataset(tmp_path / "ml").interactions.rows() == [("1", "2", 3.0, 4)]
    (tmp_path / "t.csv").write_text("user_id,item_id,rating\na,b,2\n")
    assert load_dataset(str(tmp_path / "t.csv")).interactions.rows() == [("a", "b", 2.0)]
    amazon = tmp_path / "amz"
    amazon.mkdir()
    (amazon / "X_5.json").write_text(
        json.dumps({"reviewerID": "u", "asin": "i", "overall": 4, "unixReviewTime": 9})
    )
    (amazon / "meta_X.json").write_text(json.dumps({"asin": "i", "title": "T"}))
    ds = load_dataset(amazon)
    assert ds.interactions.select("user_id", "item_id", "rating").rows() == [("u", "i", 4.0)]
    assert ds.items is not None and ds.items["title"].to_list() == ["T"]
    with pytest.raises(DataError, match="metadata file"):
        load_dataset(amazon / "meta_X.json")
    with pytest.raises(DataError, match="neither a registered dataset"):
        load_dataset(tmp_path / "missing")


@pytest.mark.skipif(os.environ.get("ATTNREC_NETWORK_TESTS") != "1", reason="set ATTNREC_NETWORK_TESTS=1")
def test_real_fetch_ml100k(tmp_path: Path) -> None:
    res = fetch("ml-100k", home=tmp_path, progress=False)
    assert res.source in ("grouplens", "pypi:recbole==1.2.1")
    ds = load_dataset("ml-100k", home=tmp_path)
    info = ds.info()
    assert (info["interactions"], info["users"], info["items"]) == (100_000, 943, 1682)
    assert ds.users is not None and ds.users.height == 943
    assert ds.items is not None and ds.items.height == 1682

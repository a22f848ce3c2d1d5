"""Bundles that are safe to load: each attack on a bundle directory is refused with a DataError naming the file
(and field or tensor), never imports code, never hangs, never crashes natively; the normal round trip stays exact.

Most attacks rewrite one file and then its checksum in the manifest (:func:`rewrite`), as someone who can edit
the whole bundle would, so that the check behind the checksum is the one under test.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from attnrec.errors import DataError
from attnrec.models.base import Estimator, Recommender
from attnrec.models.rating.svd import SVD
from attnrec.models.topk.pop import Pop
from attnrec.serving import bundle, bundle_files
from attnrec.serving.bundle import load_bundle, load_bundle_items, save_bundle
from attnrec.testing import checkerboard
from attnrec.testing.tamper import (
    edit_manifest,
    edit_weights,
    manifest,
    poke,
    rewrite,
    set_tensor,
    write_manifest,
)


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def pop() -> Pop:
    train, _, _ = checkerboard(implicit=True)
    model = Pop()
    model.fit(train)
    return model


@pytest.fixture(scope="module")
def svd() -> SVD:
    train, valid, _ = checkerboard()
    model = SVD(factors=4, iterations=2)
    model.fit(train, valid)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, pop: Pop, svd: SVD) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saved")
    assert pop.item_vocab is not None
    items = pl.DataFrame({"item_id": pop.item_vocab.ids, "title": [f"title {i}" for i in pop.item_vocab.ids]})
    return {"pop": save_bundle(pop, root / "pop", items=items), "svd": save_bundle(svd, root / "svd")}


@pytest.fixture
def pop_dir(saved: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved["pop"], tmp_path / "pop"))


@pytest.fixture
def svd_dir(saved: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved["svd"], tmp_path / "svd"))


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a blocking open() or read()."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def assert_same_model(loaded: Estimator[Any], model: Recommender[Any]) -> None:
    assert isinstance(loaded, Recommender) and type(loaded) is type(model)
    assert loaded.config == model.config
    assert loaded.user_vocab == model.user_vocab and loaded.item_vocab == model.item_vocab
    users = np.arange(model.n_users)
    assert torch.equal(loaded.score_users(users), model.score_users(users))
    assert loaded.seen is not None and model.seen is not None
    assert (loaded.seen != model.seen).nnz == 0


# ------------------------------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("name", ["pop", "svd"])
def test_round_trip_is_exact_and_every_file_has_its_checksum(
    name: str, saved: dict[str, Path], pop: Pop, svd: SVD
) -> None:
    path = saved[name]
    model: Recommender[Any] = pop if name == "pop" else svd
    assert_same_model(load_bundle(path), model)
    m = manifest(path)
    assert m["format"] == bundle.FORMAT_VERSION == 2
    on_disk = {p.name for p in path.iterdir()} - {"manifest.json"}
    assert set(m["files"]) == on_disk
    for file, entry in m["files"].items():
        data = (path / file).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def test_item_metadata_round_trips(saved: dict[str, Path], svd_dir: Path, pop: Pop) -> None:
    items = load_bundle_items(saved["pop"])
    assert (
        items is not None
        and pop.item_vocab is not None
        and items["item_id"].to_list() == pop.item_vocab.ids.tolist()
    )
    assert items["title"][0] == f"title {pop.item_vocab.ids[0]}"
    assert load_bundle_items(svd_dir) is None
    # a stray items.parquet that the manifest does not list is not read
    (svd_dir / "items.parquet").write_bytes(b"not parquet")
    assert load_bundle_items(svd_dir) is None


def test_format_1_bundles_load_unverified_with_a_warning_only_when_trusted(
    pop_dir: Path, pop: Pop, caplog: pytest.LogCaptureFixture
) -> None:
    m = manifest(pop_dir)
    del m["files"]
    write_manifest(pop_dir, {**m, "format": 1})
    # format 1 weights carry no metadata
    tensors = load_safetensors((pop_dir / "weights.safetensors").read_bytes())
    (pop_dir / "weights.safetensors").write_bytes(save_safetensors(tensors))
    # untrusted, a downgrade to format 1 must not skip the checksums
    for load in (load_bundle, load_bundle_items):
        with pytest.raises(
            DataError, match=r"manifest\.json, field 'format', value 1: .*no checksums.*re-save"
        ):
            load(pop_dir)
    with caplog.at_level(logging.WARNING, logger="attnrec.serving.bundle"):
        loaded = load_bundle(pop_dir, trust_code=True)
    assert_same_model(loaded, pop)
    assert "no checksums" in caplog.text and "manifest.json" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="attnrec.serving.bundle"):
        assert load_bundle_items(pop_dir, trust_code=True) is not None
    assert caplog.text == ""  # said once per load, not again for the item metadata
    # the file checks still apply to format 1
    (pop_dir / "users.json").unlink()
    (pop_dir / "users.json").symlink_to(pop_dir / "items.json")
    with pytest.raises(DataError, match=r"users\.json.*symbolic link"):
        load_bundle(pop_dir, trust_code=True)


# ------------------------------------------------------------------------------------------------ code in the manifest
def test_a_manifest_naming_a_module_does_not_import_it(
    pop_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    monkeypatch.delitem(sys.modules, "this", raising=False)
    for name, target in [("this", "this:s"), ("os:system", "os:system"), ("my_model", "this:Recommender")]:
        edit_manifest(pop_dir, model=name, model_class=target)
        with pytest.raises(DataError, match="not registered") as err:
            load_bundle(pop_dir)
        assert "manifest.json" in str(err.value) and repr(name) in str(err.value)
        assert "trust_code=True" in str(err.value)
    assert "this" not in sys.modules
    assert calls == []
    assert capsys.readouterr().out == ""
    # opted in, a path that is not a model class is still refused (and nothing is called)
    edit_manifest(pop_dir, model="shell", model_class="os:system")
    with pytest.raises(DataError, match="model_class.*is not an Estimator"):
        load_bundle(pop_dir, trust_code=True)
    assert calls == []


def test_trust_code_imports_an_unregistered_model_class(
    pop_dir: Path, pop: Pop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = tmp_path / "plugins"
    plugin.mkdir()
    (plugin / "attnrec_bundle_plugin.py").write_text(
        "from attnrec.models.topk.pop import Pop\n\nclass MyPop(Pop):\n    name = 'my_pop'\n"
    )
    monkeypatch.syspath_prepend(str(plugin))
    monkeypatch.delitem(sys.modules, "attnrec_bundle_plugin", raising=False)
    edit_manifest(pop_dir, model="my_pop", model_class="attnrec_bundle_plugin:MyPop")
    edit_weights(pop_dir, lambda t: None, model="my_pop")
    with pytest.raises(DataError, match="'my_pop' is not registered"):
        load_bundle(pop_dir)
    assert "attnrec_bundle_plugin" not in sys.modules
    loaded = load_bundle(pop_dir, trust_code=True)
    assert isinstance(loaded, Pop) and type(loaded).__name__ == "MyPop"
    assert torch.equal(loaded.score_users(np.arange(3)), pop.score_users(np.arange(3)))


def test_another_models_weights_or_task_are_refused(pop_dir: Path, svd_dir: Path) -> None:
    # svd's weights (and their checksum) under pop's manifest
    rewrite(pop_dir, "weights.safetensors", (svd_dir / "weights.safetensors").read_bytes())
    with pytest.raises(DataError, match=r"weights\.safetensors.*saved from a 'svd' model.*'pop'"):
        load_bundle(pop_dir)
    edit_manifest(svd_dir, task="topk")
    with pytest.raises(DataError, match=r"field 'task'.*'topk'.*expected rating"):
        load_bundle(svd_dir)


# ------------------------------------------------------------------------------------------------ integrity
@pytest.mark.parametrize("name", ["weights.safetensors", "users.json", "items.json", "extra.json"])
def test_changed_truncated_or_missing_files_fail_the_check(svd_dir: Path, name: str) -> None:
    file = svd_dir / name
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"{name}: does not match its sha256"):
        load_bundle(svd_dir)
    file.write_bytes(bytes(data[:-1]))
    with pytest.raises(DataError, match=rf"{name}: has {len(data) - 1:,} bytes but the manifest lists"):
        load_bundle(svd_dir)
    file.unlink()
    with pytest.raises(DataError, match=rf"{name}: missing from the bundle"):
        load_bundle(svd_dir)


def test_a_file_of_the_wrong_size_is_refused_before_it_is_read(svd_dir: Path) -> None:
    huge = 2**33  # sparse: takes no disk, but reading it would take 8 GiB of memory
    os.truncate(svd_dir / "weights.safetensors", huge)
    with deadline(20), pytest.raises(DataError, match=rf"has {huge:,} bytes but the manifest lists"):
        load_bundle(svd_dir)


def test_a_changed_item_metadata_file_fails_the_check(pop_dir: Path) -> None:
    with (pop_dir / "items.parquet").open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(DataError, match=r"items\.parquet: has .* bytes but the manifest lists"):
        load_bundle_items(pop_dir)
    rewrite(pop_dir, "items.parquet", b"PAR1 not really parquet")
    with pytest.raises(DataError, match=r"items\.parquet: not a readable Parquet file"):
        load_bundle_items(pop_dir)
    buf = io.BytesIO()
    pl.DataFrame({"id": ["i0"]}).write_parquet(buf)
    rewrite(pop_dir, "items.parquet", buf.getvalue())
    with pytest.raises(DataError, match=r"items\.parquet.*no item_id column"):
        load_bundle_items(pop_dir)


# ------------------------------------------------------------------------------------------------ the file system
def test_a_symlink_out_of_the_bundle_is_refused(pop_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    shutil.copy(pop_dir / "users.json", outside)  # same bytes: the checksum alone would pass it
    (pop_dir / "users.json").unlink()
    (pop_dir / "users.json").symlink_to(outside)
    with pytest.raises(DataError, match=r"users\.json: is a symbolic link .*outside\.json"):
        load_bundle(pop_dir)


def test_a_symlinked_manifest_and_a_link_to_dev_zero_are_refused(pop_dir: Path, tmp_path: Path) -> None:
    (pop_dir / "extra.json").unlink()
    (pop_dir / "extra.json").symlink_to("/dev/zero")
    with deadline(20), pytest.raises(DataError, match=r"extra\.json: is a symbolic link"):
        load_bundle(pop_dir)
    shutil.move(pop_dir / "manifest.json", tmp_path / "elsewhere.json")
    (pop_dir / "manifest.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(DataError, match=r"manifest\.json: is a symbolic link"):
        load_bundle(pop_dir)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
@pytest.mark.parametrize("name", ["manifest.json", "users.json", "weights.safetensors"])
def test_a_fifo_in_the_bundle_does_not_hang(pop_dir: Path, name: str) -> None:
    (pop_dir / name).unlink()
    os.mkfifo(pop_dir / name)
    with deadline(20), pytest.raises(DataError, match=rf"{name}: is a FIFO"):
        load_bundle(pop_dir)


def test_a_directory_in_place_of_a_file_and_a_missing_bundle(pop_dir: Path, tmp_path: Path) -> None:
    (pop_dir / "items.json").unlink()
    (pop_dir / "items.json").mkdir()
    with pytest.raises(DataError, match=r"items\.json: is a directory"):
        load_bundle(pop_dir)
    with pytest.raises(DataError, match="no such directory"):
        load_bundle(tmp_path / "nowhere")
    with pytest.raises(DataError, match="manifest.json is missing"):
        load_bundle(tmp_path)


def test_json_files_are_capped(pop_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = json.loads((pop_dir / "users.json").read_text())
    big = json.dumps({**users, "padding": "x" * 10_000}).encode()  # valid, and larger than the manifest
    rewrite(pop_dir, "users.json", big)
    monkeypatch.setattr(bundle_files, "MAX_JSON_BYTES", len(big) - 1)  # the caps live with the file reads
    with pytest.raises(
        DataError, match=rf"users\.json: has {len(big):,} bytes, over the {len(big) - 1:,}-byte limit"
    ):
        load_bundle(pop_dir)


# ------------------------------------------------------------------------------------------------ the manifest
@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: [m], "the manifest is a JSON list"),
        (lambda m: {k: v for k, v in m.items() if k != "model"}, "field 'model': required key is missing"),
        (lambda m: {**m, "format": "2"}, "field 'format', value '2': wrong type str"),
        (lambda m: {**m, "format": True}, "field 'format', value True: wrong type bool"),
        (lambda m: {**m, "format": 3}, "field 'format', value 3: unsupported bundle format"),
        (lambda m: {**m, "config": []}, "field 'config', value \\[\\]: wrong type list"),
        (lambda m: {k: v for k, v in m.items() if k != "files"}, "field 'files': required key is missing"),
        (
            lambda m: {**m, "files": {**m["files"], "../../etc/passwd": m["files"]["users.json"]}},
            "not a bundle file",
        ),
        (
            lambda m: {**m, "files": {**m["files"], "users.json": {"sha256": "00", "bytes": 1}}},
            "field 'files.users.json.sha256'",
        ),
        (lambda m: {**m, "config": {"factors": 4}}, "field 'config'.*factors"),
    ],
)
def test_a_malformed_manifest_names_the_key(pop_dir: Path, change: Callable[[Any], Any], match: str) -> None:
    write_manifest(pop_dir, change(manifest(pop_dir)))
    with pytest.raises((DataError, ValueError), match=r"manifest\.json.*" + match):
        load_bundle(pop_dir)


def test_invalid_json_names_the_file_and_line(pop_dir: Path) -> None:
    (pop_dir / "manifest.json").write_text('{\n  "format": 2,\n  "model": "pop"\n  "task": "topk"\n}')
    with pytest.raises(DataError, match=r"manifest\.json:4: invalid JSON"):
        load_bundle(pop_dir)
    (pop_dir / "manifest.json").write_bytes(b'{"model": "\xff"}')
    with pytest.raises(DataError, match=r"manifest\.json: not UTF-8 at byte 11"):
        load_bundle(pop_dir)


def test_a_manifest_that_is_empty_or_deeply_nested_is_a_data_error(pop_dir: Path) -> None:
    (pop_dir / "manifest.json").write_text("")
    with pytest.raises(DataError, match=r"manifest\.json:1: invalid JSON"):
        load_bundle(pop_dir)
    (pop_dir / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"manifest\.json: invalid JSON"):
        load_bundle(pop_dir)


# ------------------------------------------------------------------------------------------------ JSON files
@pytest.mark.parametrize("name", ["users.json", "items.json", "extra.json"])
def test_corrupt_json_files_name_the_file_and_line(pop_dir: Path, name: str) -> None:
    rewrite(pop_dir, name, b'{\n  "ids": [\n    "u0",\n')
    with pytest.raises(DataError, match=rf"{name}:4: invalid JSON"):
        load_bundle(pop_dir)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"ids": [1, 2]}, "field 'ids': not a vocabulary"),
        ([], "field 'ids': not a vocabulary"),
        ({"kind": "user", "ids": ["u0", "u0"]}, "duplicate user id"),
    ],
)
def test_a_bad_vocabulary_names_the_file(pop_dir: Path, data: Any, match: str) -> None:
    rewrite(pop_dir, "users.json", json.dumps(data).encode())
    with pytest.raises(DataError, match=rf"users\.json.*{match}"):
        load_bundle(pop_dir)


def test_extra_json_must_be_an_object(pop_dir: Path) -> None:
    rewrite(pop_dir, "extra.json", b"[1, 2]")
    with pytest.raises(DataError, match=r"extra\.json: expected a JSON object, got list"):
        load_bundle(pop_dir)


# ------------------------------------------------------------------------------------------------ tensors
_set, _poke = set_tensor, poke


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            _set("_seen.indptr", lambda t: _poke(t, 5, int(t[-1]) + 100)),
            "_seen.indptr.*non-decreasing from 0",
        ),
        (_set("_seen.indptr", lambda t: _poke(t, 0, 1)), "_seen.indptr.*not a CSR row pointer"),
        (_set("_seen.indptr", lambda t: _poke(t, -1, int(t[-1]) - 1)), "_seen.indptr.*not a CSR row pointer"),
        (_set("_seen.indptr", lambda t: t[:-1]), "_seen.indptr.*expected n_users \\+ 1"),
        (_set("_seen.indices", lambda t: _poke(t, 3, 10**9)), "_seen.indices.*out of range.*expected 0..39"),
        (_set("_seen.indices", lambda t: _poke(t, 0, -1)), "_seen.indices.*out of range"),
        (_set("_seen.indices", lambda t: t.float()), "_seen.indices.*expected 1-D torch.int64"),
        (
            _set("_seen.indices", lambda t: t.int()),
            "_seen.indices.*dtype torch.int32.*expected 1-D torch.int64",
        ),
        (lambda t: t.__delitem__("_seen.indices"), "_seen.indices.*missing"),
    ],
)
def test_a_tampered_seen_matrix_is_a_data_error_not_a_crash(
    pop_dir: Path, change: Callable[[dict[str, torch.Tensor]], None], match: str
) -> None:
    edit_weights(pop_dir, change)
    with pytest.raises(DataError, match=r"weights\.safetensors.*" + match):
        load_bundle(pop_dir)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_name_the_tensor(svd_dir: Path, bad: float) -> None:
    edit_weights(svd_dir, _set("q", lambda t: _poke(t, 2, bad)))  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"weights\.safetensors, field 'q': 4 non-finite"):
        load_bundle(svd_dir)


def test_truncated_or_empty_weights_are_a_data_error(svd_dir: Path) -> None:
    data = (svd_dir / "weights.safetensors").read_bytes()
    for cut in (data[:-10], data[:4], b""):
        rewrite(svd_dir, "weights.safetensors", cut)
        with pytest.raises(DataError, match=r"weights\.safetensors: not a readable safetensors file"):
            load_bundle(svd_dir)


def test_weights_that_do_not_fit_name_the_tensor(svd_dir: Path, pop_dir: Path) -> None:
    edit_manifest(svd_dir, config={**manifest(svd_dir)["config"], "factors": 8})
    with pytest.raises(
        DataError, match=r"weights\.safetensors, field 'p': shape \(60, 4\).*expected shape \(60, 8\)"
    ):
        load_bundle(svd_dir)
    edit_manifest(svd_dir, config={**manifest(svd_dir)["config"], "factors": 4})
    edit_weights(svd_dir, lambda t: t.__delitem__("bi"))
    with pytest.raises(DataError, match=r"weights\.safetensors, field 'bi': the weights have no tensor 'bi'"):
        load_bundle(svd_dir)
    edit_weights(pop_dir, lambda t: t.__delitem__("counts"))
    with pytest.raises(DataError, match=r"weights\.safetensors, field 'counts': the weights have no tensor"):
        load_bundle(pop_dir)


# ------------------------------------------------------------------------------------------------ the CLI
def _tamper_model_name(path: Path) -> None:
    edit_manifest(path, model="this", model_class="this:s")


def _tamper_bytes(path: Path) -> None:
    with (path / "weights.safetensors").open("r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(b"\x01" if last == b"\x00" else b"\x00")


def _tamper_indptr(path: Path) -> None:
    edit_weights(path, _set("_seen.indptr", lambda t: _poke(t, 5, int(t[-1]) + 100)))


@pytest.mark.parametrize(
    ("tamper", "needle"),
    [
        (_tamper_model_name, "manifest.json, field 'model', value 'this': model 'this' is not registered"),
        (_tamper_bytes, "weights.safetensors: does not match its sha256"),
        (_tamper_indptr, "weights.safetensors, field '_seen.indptr'"),
    ],
)
def test_the_cli_reports_a_bad_bundle_in_one_line(
    pop_dir: Path,
    tamper: Callable[[Path], None],
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from attnrec.cli import main

    def run() -> tuple[int, str, str]:
        monkeypatch.setattr(
            sys, "argv", ["attnrec", "recommend", "--model-dir", str(pop_dir), "--users", "u0"]
        )
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = run()
    assert code == 0 and "u0" in out, err
    tamper(pop_dir)
    code, out, err = run()
    assert code == 2
    assert "".join(needle.split()) in "".join(err.split())  # the console wraps long lines anywhere
    assert "Traceback" not in err

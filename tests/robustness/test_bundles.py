"""Hardening, the bundle rows: a model bundle someone else wrote is refused with one clear error, never a crash,
a hang, a network attempt or a silent wrong answer.

Each row of the issue's table, on bundles of several kinds (svd, pop, bpr, lightgcn, hybrid_csa and a CTR lr),
each fitted once per module on tiny data, through the CLI (``recommend``, ``evaluate``, ``predict``) and through
:func:`attnrec.serving.bundle.load_bundle`:

1. a tampered seen matrix (CSR indptr / indices out of range, non-monotone, wrong dtype): once a heap-corruption
   abort or segfault, so some probes run in a child process (``cli_process``) where a native crash is seen;
2. a malformed manifest, weights, vocabulary, extra.json or items.parquet, links out of the bundle, another
   model's manifest: once KeyError / RuntimeError / SafetensorError / JSONDecodeError tracebacks;
3. NaN weights, an edited ``mu``, swapped ids, one model's weights under another's manifest: once served silently;
4. ``config.encoder`` naming a folder or a hub id: once loaded whatever it named (74 s of network attempts);
5. a FIFO manifest, a vocabulary linked to /dev/zero, oversized JSON: once a hang or a MemoryError.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from polars.exceptions import PanicException
from safetensors.torch import load_file

from attnrec.data.side import SideInputs
from attnrec.errors import DataError, MissingExtraError
from attnrec.experiments.run import RunConfig, run_experiment
from attnrec.models.rating.hybrid_csa import HybridCSA
from attnrec.models.rating.svd import SVD
from attnrec.models.topk.bpr import BPR
from attnrec.models.topk.lightgcn import LightGCN
from attnrec.models.topk.pop import Pop
from attnrec.serving import bundle as bundle_module
from attnrec.serving import bundle_files
from attnrec.serving.bundle import load_bundle, load_bundle_items, save_bundle
from attnrec.testing import checkerboard
from attnrec.testing.tamper import (
    edit_json,
    edit_manifest,
    edit_weights,
    manifest,
    poke,
    rewrite,
    set_tensor,
    write_manifest,
)
from attnrec.text import HashingTextModel, SentenceEncoder
from attnrec.text import encoder as encoder_module
from attnrec.training.trainer import TrainerConfig

from .conftest import Probe, assert_clean_error, assert_ok, cli_process

RECOMMENDERS = ("svd", "pop", "bpr", "lightgcn", "hybrid_csa")
KINDS = (*RECOMMENDERS, "lr")
#: one float tensor per kind, the one the NaN probes poison
FLOAT_TENSOR = {
    "svd": "q",
    "pop": "counts",
    "bpr": "item.weight",
    "lightgcn": "user.weight",
    "hybrid_csa": "item_text",
    "lr": "linear.bias",
}


def drop(tensors: dict[str, torch.Tensor], key: str) -> None:
    del tensors[key]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One bundle per kind, fitted once on tiny data, plus the files the CLI probes read (``*_csv``)."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: thread hand-offs cost more than the work
    root = tmp_path_factory.mktemp("bundles")
    trainer = TrainerConfig(progress=False, device="cpu", epochs=1, batch_size=256)
    rating, rating_valid, rating_test = checkerboard()
    implicit, implicit_valid, _ = checkerboard(implicit=True)
    meta = pl.DataFrame(
        {"item_id": rating.item_vocab.ids, "title": [f"item {i}" for i in rating.item_vocab.ids]}
    )
    models: dict[str, Any] = {"svd": SVD(factors=4, iterations=2), "pop": Pop()}
    models["svd"].fit(rating, rating_valid)
    models["pop"].fit(implicit)
    for name, cls in (("bpr", BPR), ("lightgcn", LightGCN)):
        models[name] = cls(dim=4)
        models[name].fit(implicit, implicit_valid, trainer=trainer)
    models["hybrid_csa"] = HybridCSA(svd_factors=4, svd_iterations=2, d_model=8, heads=2, mlp_hidden=8)
    models["hybrid_csa"].fit(
        rating,
        rating_valid,
        trainer=trainer,
        side=SideInputs(items=meta),
        encoder=SentenceEncoder(HashingTextModel(dim=16), progress=False),
    )
    paths = {name: save_bundle(m, root / name, items=meta) for name, m in models.items()}
    torch.set_num_threads(old_threads)
    # a CTR run on generic CSV rows: the bundle carries its feature encoder and read settings
    for part, n in (("train", 300), ("valid", 100), ("test", 60)):
        rng = np.random.default_rng(len(part))
        sites = rng.choice(list("abcdef"), n)
        clicks = (rng.random(n) < np.where(np.isin(sites, ["a", "b"]), 0.9, 0.1)).astype(int)
        rows = [f"{y},{s},{h}" for y, s, h in zip(clicks, sites, rng.integers(0, 24, n), strict=True)]
        (root / f"ctr_{part}.csv").write_text("\n".join(["label,site,hour", *rows]) + "\n")
    run_experiment(
        RunConfig(
            model="lr",
            **{p: root / f"ctr_{p}.csv" for p in ("train", "valid", "test")},
            ctr={"format": "csv"},
            trainer={"epochs": 1, "progress": False, "device": "cpu"},
            out=root / "lr_run",
        ),
        progress=False,
    )
    paths["lr"] = root / "lr_run" / "model"
    paths["ctr_csv"] = root / "ctr_test.csv"
    pl.DataFrame(
        {
            "user_id": rating.user_vocab.ids[rating_test.users],
            "item_id": rating.item_vocab.ids[rating_test.items],
            "rating": rating_test.ratings,
        }
    ).write_csv(root / "rating_test.csv")
    paths["rating_csv"] = root / "rating_test.csv"
    return paths


@pytest.fixture
def copy(built: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    """A fresh copy of a kind's bundle to tamper with."""
    return lambda kind: Path(shutil.copytree(built[kind], tmp_path / kind))


def cli_args(kind: str, path: Path, built: dict[str, Path], *, trust: bool = False) -> list[str | Path]:
    """The CLI command that serves a bundle of ``kind``: recommend for recommenders, predict for CTR."""
    flag: list[str | Path] = ["--trust-bundle"] if trust else []
    if kind == "lr":
        return ["predict", "--model-dir", path, "--data", built["ctr_csv"], *flag]
    return ["recommend", "--model-dir", path, "--users", "u1", "--k", "3", *flag]


def assert_refused(
    cli: Callable[..., Probe],
    kind: str,
    path: Path,
    built: dict[str, Path],
    *fragments: str,
    trust: bool = False,
) -> str:
    """Refused the same clean way by the library and by the CLI, naming every fragment. Returns the CLI's line.
    ``trust``: load as a caller who trusts the bundle (``trust_code=True``, ``--trust-bundle``)."""
    with pytest.raises(DataError) as err:
        load_bundle(path, trust_code=trust)
    for frag in fragments:
        assert frag in str(err.value), f"{frag!r} not in {err.value}"
    return assert_clean_error(cli(cli_args(kind, path, built, trust=trust)), str(path), *fragments)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every outgoing connection fails at once and is recorded (the list the test asserts empty)."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object, *args: object) -> None:
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_untampered_bundles_serve(cli: Callable[..., Probe], built: dict[str, Path]) -> None:
    for kind in KINDS:
        probe = cli(cli_args(kind, built[kind], built))
        assert_ok(probe)
        assert ("u1" if kind != "lr" else "probability") in probe.out
    assert_ok(cli(["evaluate", "--model-dir", built["svd"], "--test", built["rating_csv"]]))
    assert_ok(cli(["evaluate", "--model-dir", built["lr"], "--test", built["ctr_csv"]]))


# ------------------------------------------------------------------------------------------------ row 1
SEEN_TAMPERINGS: dict[str, tuple[Callable[[dict[str, torch.Tensor]], None], str]] = {
    "indptr past the end": (
        set_tensor("_seen.indptr", lambda t: poke(t, 5, int(t[-1]) + 1000)),
        "field '_seen.indptr': not a CSR row pointer",
    ),
    "indptr not monotone": (
        set_tensor("_seen.indptr", lambda t: poke(t, 3, 0)),
        "field '_seen.indptr': not a CSR row pointer",
    ),
    "indptr short": (set_tensor("_seen.indptr", lambda t: t[:-2]), "field '_seen.indptr': length"),
    "index past n_items": (
        set_tensor("_seen.indices", lambda t: poke(t, 7, 2**40)),
        "field '_seen.indices': item index out of range",
    ),
    "negative index": (
        set_tensor("_seen.indices", lambda t: poke(t, 0, -5)),
        "field '_seen.indices': item index out of range",
    ),
    "indices int32": (
        set_tensor("_seen.indices", lambda t: t.int()),
        "field '_seen.indices': shape (483,) dtype torch.int32",
    ),
    "indices float": (set_tensor("_seen.indices", lambda t: t.double()), "dtype torch.float64"),
    "indptr 2-D": (set_tensor("_seen.indptr", lambda t: t[None]), "field '_seen.indptr': shape (1, 61)"),
    "indices dropped": (lambda t: drop(t, "_seen.indices"), "field '_seen.indices': missing"),
}


@pytest.mark.parametrize(
    ("tampering", "kind"), [(t, RECOMMENDERS[n % len(RECOMMENDERS)]) for n, t in enumerate(SEEN_TAMPERINGS)]
)
def test_a_tampered_seen_matrix_is_refused_before_use(
    tampering: str, kind: str, copy: Callable[[str], Path], cli: Callable[..., Probe], built: dict[str, Path]
) -> None:
    change, needle = SEEN_TAMPERINGS[tampering]
    path = copy(kind)
    edit_weights(path, change)
    rows = len(load_file(built[kind] / "weights.safetensors")["_seen.indices"])  # one saved index per pair
    assert_refused(cli, kind, path, built, "weights.safetensors", needle.replace("(483,)", f"({rows},)"))


@pytest.mark.parametrize(
    ("kind", "tampering"),
    [("svd", "indptr past the end"), ("lightgcn", "index past n_items")],
)
def test_a_tampered_seen_matrix_never_crashes_the_process(
    kind: str, tampering: str, copy: Callable[[str], Path], built: dict[str, Path]
) -> None:
    """In a child process: an out-of-bounds read or write would kill it with a signal (cli_process fails)."""
    path = copy(kind)
    edit_weights(path, SEEN_TAMPERINGS[tampering][0])
    assert_clean_error(cli_process(cli_args(kind, path, built)), "weights.safetensors", "_seen.")


# ------------------------------------------------------------------------------------------------ row 2
def _unlink_weights(path: Path) -> None:
    (path / "weights.safetensors").unlink()


def _link_out(path: Path) -> None:
    outside = path.parent / f"{path.name}-users-outside.json"
    shutil.copy(path / "users.json", outside)  # the same bytes: its checksum alone would pass it
    (path / "users.json").unlink()
    (path / "users.json").symlink_to(outside)


def _weights(change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    return lambda path: rewrite(
        path, "weights.safetensors", change((path / "weights.safetensors").read_bytes())
    )


#: (what, the kind of bundle it is tried on, the tampering, what the error names)
MALFORMED: list[tuple[str, str, Callable[[Path], None], tuple[str, ...]]] = [
    ("manifest a list", "svd", lambda p: write_manifest(p, [manifest(p)]), ("manifest.json", "a JSON list")),
    (
        "manifest lacking 'model'",
        "lr",
        lambda p: write_manifest(p, {k: v for k, v in manifest(p).items() if k != "model"}),
        ("manifest.json", "field 'model': required key is missing"),
    ),
    (
        "manifest lacking 'files'",
        "pop",
        lambda p: write_manifest(p, {k: v for k, v in manifest(p).items() if k != "files"}),
        ("manifest.json", "field 'files'"),
    ),
    (
        "manifest not JSON",
        "bpr",
        lambda p: (p / "manifest.json").write_text('{"format": 2,'),
        ("manifest.json:1", "invalid JSON"),
    ),
    (
        "weights truncated",
        "lightgcn",
        _weights(lambda b: b[: len(b) // 2]),
        ("weights.safetensors", "not a readable"),
    ),
    ("weights empty", "lr", _weights(lambda b: b""), ("weights.safetensors", "not a readable safetensors")),
    ("weights missing", "hybrid_csa", _unlink_weights, ("weights.safetensors", "missing from the bundle")),
    (
        "users.json corrupt",
        "svd",
        lambda p: rewrite(p, "users.json", b'{"ids": ["u0",'),
        ("users.json:1", "invalid JSON"),
    ),
    (
        "items.json not a vocabulary",
        "lightgcn",
        lambda p: rewrite(p, "items.json", b'{"ids": [1, 2]}'),
        ("items.json", "field 'ids'"),
    ),
    (
        "extra.json corrupt",
        "lr",
        lambda p: rewrite(p, "extra.json", b"{\n]"),
        ("extra.json:2", "invalid JSON"),
    ),
    ("extra.json a list", "pop", lambda p: rewrite(p, "extra.json", b"[]"), ("extra.json", "JSON object")),
    ("users.json linked out", "bpr", _link_out, ("users.json", "symbolic link")),
]


@pytest.mark.parametrize(("what", "kind", "tamper", "fragments"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_bundle_file_is_one_line_naming_it(
    what: str,
    kind: str,
    tamper: Callable[[Path], None],
    fragments: tuple[str, ...],
    copy: Callable[[str], Path],
    cli: Callable[..., Probe],
    built: dict[str, Path],
) -> None:
    path = copy(kind)
    tamper(path)
    assert_refused(cli, kind, path, built, *fragments)
    if kind in ("svd", "lr"):  # evaluate loads the same way
        test = built["rating_csv" if kind == "svd" else "ctr_csv"]
        assert_clean_error(cli(["evaluate", "--model-dir", path, "--test", test]), str(path), *fragments)


@pytest.mark.parametrize(
    ("kind", "tensor", "change", "needle"),
    [
        (
            "svd",
            "p",
            lambda t: t[:50],
            "field 'p': shape (50, 4) dtype torch.float32 (expected shape (60, 4)",
        ),
        ("svd", "mu", lambda t: t.reshape(1), "field 'mu': shape (1,)"),
        ("svd", "q", lambda t: t.half(), "field 'q': shape (40, 4) dtype torch.float16"),
        (
            "svd",
            "q",
            lambda t: t.to(torch.float8_e4m3fn),
            "field 'q': shape (40, 4) dtype torch.float8_e4m3fn",
        ),
        (
            "svd",
            "_rating_range",
            lambda t: t.bfloat16(),
            "field '_rating_range': shape (2,) dtype torch.bfloat16",
        ),
        (  # torch has no isfinite for float8: the check widens it first
            "pop",
            "counts",
            lambda t: torch.full_like(t, float("nan")).to(torch.float8_e4m3fn),
            "field 'counts': 40 non-finite",
        ),
        ("svd", "_rating_range", lambda t: t.flip(0), "field '_rating_range', value ("),
        ("pop", "counts", lambda t: t[:-1], "field 'counts': shape (39,)"),
        ("bpr", "item.weight", lambda t: t.long(), "field 'item.weight': shape (40, 4) dtype torch.int64"),
        ("hybrid_csa", "user_factors", lambda t: t[:59], "field 'user_factors': shape (59, 4)"),
        ("hybrid_csa", "item_text", lambda t: t[:, :8].contiguous(), "dtype torch.float32 (expected shape ("),
        ("hybrid_csa", "mlp.net.1.running_var", lambda t: -t, "'mlp.net.1.running_var': negative variance"),
        (
            "lr",
            "linear.weights.table.weight",
            lambda t: t[:3],
            "field 'linear.weights.table.weight': shape (3, 1)",
        ),
    ],
)
def test_wrong_shape_or_dtype_weights_name_the_tensor(
    kind: str,
    tensor: str,
    change: Callable[[torch.Tensor], torch.Tensor],
    needle: str,
    copy: Callable[[str], Path],
    cli: Callable[..., Probe],
    built: dict[str, Path],
) -> None:
    path = copy(kind)
    edit_weights(path, set_tensor(tensor, change))
    assert_refused(cli, kind, path, built, "weights.safetensors", needle)


@pytest.mark.parametrize(
    ("kind", "key", "tensor"),
    [
        ("svd", "factors", "p"),
        ("bpr", "dim", "user.weight"),
        ("lightgcn", "dim", "user.weight"),
        ("hybrid_csa", "d_model", "proj_user.0.weight"),
    ],
)
def test_a_config_naming_a_huge_size_is_refused_before_allocating_it(
    kind: str, key: str, tensor: str, copy: Callable[[str], Path], built: dict[str, Path]
) -> None:
    """The weights' shapes are checked against the config's on the meta device: 10**12 columns would be terabytes
    (a regression shows as torch's "can't allocate memory" instead of the expected shape), and sizes whose product
    overflows are refused as a config that cannot be built."""
    path = copy(kind)
    edit_manifest(path, config={**manifest(path)["config"], key: 10**8})
    with pytest.raises(
        DataError, match=rf"weights\.safetensors, field '{re.escape(tensor)}': shape .*expected shape"
    ):
        load_bundle(path)
    if kind == "hybrid_csa":  # d_model x 3 d_model elements overflow int64: a config that cannot be built
        edit_manifest(path, config={**manifest(path)["config"], key: 10**12})
        with pytest.raises(DataError, match=rf"field 'config': the config does not give a {kind} model"):
            load_bundle(path)


def test_a_ctr_schema_naming_a_huge_vocabulary_is_refused_before_allocating_it(
    copy: Callable[[str], Path], cli: Callable[..., Probe], built: dict[str, Path]
) -> None:
    path = copy("lr")

    def huge(d: dict[str, Any]) -> dict[str, Any]:
        for schema in (d["schema"], d["encoder"]["schema"]):
            schema["fields"][0]["vocab_size"] = 10**12
        return d

    edit_json(path, "extra.json", huge)
    # the encoder's vocabulary no longer fits the schema; with the encoder gone, the table's shape is what is wrong
    assert_refused(cli, "lr", path, built, "extra.json", "vocabulary has")
    edit_json(path, "extra.json", lambda d: {**d, "encoder": None})
    with pytest.raises(DataError, match=r"field 'linear.weights.table.weight': shape .*expected shape"):
        load_bundle(path)


@pytest.mark.parametrize(("kind", "tensor"), [("svd", "bi"), ("pop", "counts"), ("lr", "linear.bias")])
def test_a_missing_or_extra_tensor_is_named(
    kind: str, tensor: str, copy: Callable[[str], Path], cli: Callable[..., Probe], built: dict[str, Path]
) -> None:
    path = copy(kind)
    original = load_file(path / "weights.safetensors")[tensor]
    edit_weights(path, lambda t: drop(t, tensor))
    assert_refused(cli, kind, path, built, "weights.safetensors", f"field '{tensor}'", "no tensor")
    edit_weights(path, lambda t: t.update({tensor: original, "stowaway": torch.zeros(2)}))
    assert_refused(cli, kind, path, built, "weights.safetensors", "field 'stowaway'", "does not have")


@pytest.mark.parametrize(
    ("kind", "name", "change", "fragments"),
    [
        (
            "hybrid_csa",
            "extra.json",
            lambda d: {**d, "titles": d["titles"][:5]},
            ("field 'titles'", "40 strings"),
        ),
        ("hybrid_csa", "extra.json", lambda d: {**d, "n_warm_items": -1}, ("field 'n_warm_items'", "0..40")),
        ("hybrid_csa", "extra.json", lambda d: {**d, "encoder": "x"}, ("field 'encoder'", "not an object")),
        ("hybrid_csa", "extra.json", lambda d: {**d, "text_weight": 7}, ("field 'text_weight'", "0 to 1")),
        ("lr", "extra.json", lambda d: {**d, "schema": {"fields": 3}}, ("extra.json", "not valid")),
        ("lr", "extra.json", lambda d: {"encoder": d["encoder"]}, ("field 'schema'", "no feature schema")),
        (
            "lr",
            "extra.json",
            lambda d: {**d, "encoder": {"x": 1}},
            ("field 'encoder'", "not a feature encoder"),
        ),
        (
            "lr",
            "extra.json",
            lambda d: {**d, "calibrator": {"method": "temperature", "a": -1.0, "b": 0.0}},
            ("calibrator, field 'a'", "slope must be positive"),
        ),
        (
            "lr",
            "extra.json",
            lambda d: {**d, "encoder": {**d["encoder"], "schema": {**d["encoder"]["schema"], "label": "y"}}},
            ("field 'encoder.schema'", "differs from the model's"),
        ),
    ],
)
def test_a_models_json_artifacts_are_checked(
    kind: str,
    name: str,
    change: Callable[[Any], Any],
    fragments: tuple[str, ...],
    copy: Callable[[str], Path],
    cli: Callable[..., Probe],
    built: dict[str, Path],
) -> None:
    path = copy(kind)
    edit_json(path, name, change)
    assert_refused(cli, kind, path, built, name, *fragments)


def test_a_corrupt_items_parquet_is_one_line(
    copy: Callable[[str], Path], cli: Callable[..., Probe], built: dict[str, Path]
) -> None:
    path = copy("pop")
    rewrite(path, "items.parquet", b"PAR1 but not Parquet")
    load_bundle(path)  # the model itself is fine; the titles are read when recommendations are shown
    assert_clean_error(cli(cli_args("pop", path, built)), "items.parquet", "not a readable Parquet file")


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (pl.DataFrame({"item_id": [1, 2], "title": ["a", "b"]}), "field 'item_id': column type Int64"),
        (pl.DataFrame({"item_id": ["i1", "i2"], "title": [["a"], ["b"]]}), "field 'title': column type List"),
        (
            pl.DataFrame({"item_id": ["i1", "i1"], "title": ["a", "b"]}),
            "field 'item_id': repeated or missing",
        ),
        (pl.DataFrame({"id": ["i1"]}), "no item_id column"),
    ],
)
def test_item_metadata_that_would_break_or_repeat_recommendations_is_refused(
    frame: pl.DataFrame,
    needle: str,
    copy: Callable[[str], Path],
    cli: Callable[..., Probe],
    built: dict[str, Path],
) -> None:
    path = copy("pop")
    buf = io.BytesIO()
    frame.write_parquet(buf)
    rewrite(path, "items.parquet", buf.getvalue())
    assert_clean_error(cli(cli_args("pop", path, built)), "items.parquet", needle)


def test_a_corrupt_parquet_never_escapes_as_a_panic(copy: Callable[[str], Path]) -> None:
    """Byte flips in items.parquet (checksum rewritten): the Parquet reader fails, or panics (a BaseException that
    once escaped as a traceback); either is a DataError, and an undamaged-looking frame still has unique ids."""
    path = copy("hybrid_csa")
    good = (path / "items.parquet").read_bytes()
    rng = np.random.default_rng(7)
    refused = panics = 0
    for _ in range(60):
        data = np.frombuffer(good, dtype=np.uint8).copy()
        data[rng.integers(0, len(data), 6)] = rng.integers(0, 256, 6, dtype=np.uint8)
        rewrite(path, "items.parquet", data.tobytes())
        try:
            pl.read_parquet(io.BytesIO(data.tobytes()))
        except PanicException:
            panics += 1
        except pl.exceptions.PolarsError:
            pass
        try:
            frame = load_bundle_items(path)
        except DataError as exc:
            assert "items.parquet" in str(exc)
            refused += 1
        else:
            assert frame is not None and frame["item_id"].n_unique() == frame.height
    assert refused > 30 and panics >= 1  # the probe includes the panic class


def test_saved_item_metadata_has_one_string_row_per_item(built: dict[str, Path], tmp_path: Path) -> None:
    model = load_bundle(built["pop"])
    items = pl.DataFrame({"item_id": [3, 3, 1], "title": ["first", "second", "one"]})
    frame = load_bundle_items(save_bundle(model, tmp_path / "pop", items=items))
    assert frame is not None and frame.rows() == [("3", "first"), ("1", "one")]


@pytest.mark.parametrize(
    ("kind", "other", "as_found", "made_to_match"),
    [
        ("svd", "pop", "weights.safetensors", "saved from a 'svd' model"),
        ("bpr", "lightgcn", "weights.safetensors", "saved from a 'bpr' model"),
        ("hybrid_csa", "svd", "extra.json", "saved from a 'hybrid_csa' model"),
        ("lr", "pop", "users.json: missing from the bundle", "users.json: missing from the bundle"),
    ],
)
def test_another_models_manifest_is_refused(
    kind: str,
    other: str,
    as_found: str,
    made_to_match: str,
    copy: Callable[[str], Path],
    cli: Callable[..., Probe],
    built: dict[str, Path],
) -> None:
    path = copy(kind)
    shutil.copy(
        built[other] / "manifest.json", path / "manifest.json"
    )  # its checksums are the other bundle's
    line = assert_refused(cli, kind, path, built, as_found)
    assert ("manifest lists" in line or "does not match its sha256" in line) or "missing" in line
    for name in manifest(path)["files"]:  # an attacker records this bundle's checksums in it
        if (path / name).exists():
            rewrite(path, name, (path / name).read_bytes())
    assert_refused(cli, kind, path, built, made_to_match)


# ------------------------------------------------------------------------------------------------ row 3
@pytest.mark.parametrize(
    ("kind", "bad"), [(kind, float("nan")) for kind in KINDS] + [("svd", float("inf")), ("lr", -float("inf"))]
)
def test_non_finite_weights_are_refused_even_with_a_matching_checksum(
    kind: str, bad: float, copy: Callable[[str], Path], cli: Callable[..., Probe], built: dict[str, Path]
) -> None:
    path = copy(kind)
    tensor = FLOAT_TENSOR[kind]
    edit_weights(path, set_tensor(tensor, lambda t: torch.full_like(t, bad)))
    line = assert_refused(cli, kind, path, built, "weights.safetensors", f"field '{tensor}'", "non-finite")
    assert "sha256" not in line  # the checksum was rewritten: the finiteness check is what refused it


def test_a_bundle_saved_from_a_diverged_model_is_refused(built: dict[str, Path], tmp_path: Path) -> None:
    model = load_bundle(built["bpr"])
    assert isinstance(model, BPR) and model.module is not None
    with torch.no_grad():
        model.module.state_dict()["item.weight"][3, 1] = float("nan")
    path = save_bundle(model, tmp_path / "diverged")  # checksums written by save_bundle itself
    with pytest.raises(DataError, match=r"weights\.safetensors, field 'item.weight': 1 non-finite"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("kind", "name", "edit"),
    [
        ("svd", "weights.safetensors", "mu + 10"),
        ("svd", "items.json", "two item ids swapped"),
        ("hybrid_csa", "users.json", "two user ids swapped"),
        ("lr", "extra.json", "a vocabulary token changed"),
    ],
)
def test_a_file_edited_alone_fails_its_checksum(
    kind: str,
    name: str,
    edit: str,
    copy: Callable[[str], Path],
    cli: Callable[..., Probe],
    built: dict[str, Path],
) -> None:
    path = copy(kind)
    before = manifest(path)
    if name == "weights.safetensors":
        edit_weights(path, set_tensor("mu", lambda t: t + 10))
    elif name == "extra.json":
        edit_json(path, name, lambda d: {**d, "encoder": {**d["encoder"], "n_fit_rows": 1}})
    else:
        edit_json(path, name, lambda d: {**d, "ids": [d["ids"][1], d["ids"][0], *d["ids"][2:]]})
    write_manifest(path, before)  # the file changed, its manifest entry did not
    line = assert_refused(cli, kind, path, built, name)
    assert "does not match its sha256" in line or "but the manifest lists" in line


def test_what_a_checksum_cannot_prove(copy: Callable[[str], Path], built: dict[str, Path]) -> None:
    """The limit the bundle module documents: an edit that keeps the structure, with the manifest rewritten to
    match, loads. This pins the docstring's claim (checksums are not a signature)."""
    path = copy("svd")
    edit_weights(path, set_tensor("mu", lambda t: t + 10))
    model, original = load_bundle(path), load_bundle(built["svd"])
    assert isinstance(model, SVD) and isinstance(original, SVD)
    assert model.global_mean == pytest.approx(original.global_mean + 10)
    assert "not a signature" in (bundle_module.__doc__ or "")


@pytest.mark.parametrize(("kind", "other"), [("lightgcn", "bpr"), ("pop", "svd"), ("svd", "hybrid_csa")])
def test_one_models_weights_under_anothers_manifest(
    kind: str, other: str, copy: Callable[[str], Path], cli: Callable[..., Probe], built: dict[str, Path]
) -> None:
    """bpr and lightgcn weights have the same names and shapes: the model name saved in the weights tells them
    apart, checksum or not."""
    path = copy(kind)
    rewrite(path, "weights.safetensors", (built[other] / "weights.safetensors").read_bytes())
    assert_refused(cli, kind, path, built, "weights.safetensors", f"saved from a {other!r} model")


# ------------------------------------------------------------------------------------------------ row 4
@pytest.fixture
def hostile_model_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A sentence-transformers folder whose modules.json names a module that, imported, writes a marker file."""
    folder, marker = tmp_path / "evil-model", tmp_path / "imported.marker"
    folder.mkdir()
    (folder / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "evil_st_module.Evil"}]'
    )
    (tmp_path / "evil_st_module.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass Evil: ...\n")
    return folder, marker


@pytest.mark.parametrize("encoder", ["folder", "someone/not-a-real-model", "../all-MiniLM-L6-v2", ""])
def test_a_bundle_names_only_registered_offline_text_models(
    encoder: str,
    hostile_model_folder: tuple[Path, Path],
    copy: Callable[[str], Path],
    cli: Callable[..., Probe],
    built: dict[str, Path],
    no_network: list[object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, marker = hostile_model_folder
    monkeypatch.syspath_prepend(str(folder.parent))
    name = str(folder) if encoder == "folder" else encoder
    path = copy("hybrid_csa")
    edit_manifest(path, config={**manifest(path)["config"], "encoder": name})
    line = assert_refused(cli, "hybrid_csa", path, built, "manifest.json", "field 'config.encoder'")
    assert "not a registered offline text model" in line and "--trust-bundle" in line
    query = cli(["recommend", "--model-dir", path, "--query", "item 3"])
    assert_clean_error(query, "config.encoder")
    assert not marker.exists() and "evil_st_module" not in sys.modules
    assert no_network == []


def test_trusting_a_bundle_lets_its_encoder_through(
    hostile_model_folder: tuple[Path, Path],
    copy: Callable[[str], Path],
    cli: Callable[..., Probe],
    no_network: list[object],
) -> None:
    folder, marker = hostile_model_folder
    path = copy("hybrid_csa")
    edit_manifest(path, config={**manifest(path)["config"], "encoder": str(folder)})
    model = load_bundle(path, trust_code=True)
    assert isinstance(model, HybridCSA) and model.config.encoder == str(folder) and not model.offline_only
    probe = cli(["recommend", "--model-dir", path, "--users", "u1", "--k", "3", "--trust-bundle"])
    assert_ok(probe)
    assert "u1" in probe.out
    assert not marker.exists() and no_network == []  # loading builds no encoder: it is lazy


def test_an_untrusted_bundles_encoder_stays_offline(
    built: dict[str, Path], no_network: list[object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = load_bundle(built["hybrid_csa"])  # the default, packaged all-MiniLM-L6-v2: allowed
    assert isinstance(model, HybridCSA) and model.offline_only
    monkeypatch.setenv("ATTNREC_HOME", str(tmp_path))
    # without the package, the encoder does not fall back to the hub (or to a folder of that name here)
    monkeypatch.setattr(encoder_module, "packaged_model_path", lambda name: None)
    (tmp_path / "all-MiniLM-L6-v2").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingExtraError, match=r"attnrec\[text\]"):
        SentenceEncoder("all-MiniLM-L6-v2", offline_only=True).model  # noqa: B018 - loading is the probe
    with pytest.raises(DataError, match="not a registered offline text model"):
        SentenceEncoder("someone/model", offline_only=True)
    assert no_network == []


# ------------------------------------------------------------------------------------------------ row 5
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_a_fifo_manifest_does_not_hang_the_cli(copy: Callable[[str], Path], built: dict[str, Path]) -> None:
    path = copy("svd")
    (path / "manifest.json").unlink()
    os.mkfifo(path / "manifest.json")
    probe = cli_process(cli_args("svd", path, built), timeout=60)  # a blocking open would never return
    assert_clean_error(probe, "manifest.json", "is a FIFO")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
@pytest.mark.parametrize("name", ["users.json", "weights.safetensors", "extra.json"])
def test_a_fifo_or_a_device_in_the_bundle_is_refused(
    name: str, copy: Callable[[str], Path], cli: Callable[..., Probe], built: dict[str, Path]
) -> None:
    path = copy("pop")
    (path / name).unlink()
    os.mkfifo(path / name)
    assert_refused(cli, "pop", path, built, name, "is a FIFO")
    (path / name).unlink()
    (path / name).symlink_to("/dev/zero")
    assert_refused(cli, "pop", path, built, name, "symbolic link", "/dev/zero")


@pytest.mark.parametrize(
    ("name", "cap"), [("manifest.json", "MAX_MANIFEST_BYTES"), ("users.json", "MAX_JSON_BYTES")]
)
def test_json_reads_are_capped_and_the_error_states_the_limit(
    name: str,
    cap: str,
    copy: Callable[[str], Path],
    cli: Callable[..., Probe],
    built: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = copy("svd")
    m = manifest(path)
    del m["files"]  # format 1 lists no sizes: the cap is what bounds the read (of a trusted format 1 bundle)
    write_manifest(path, {**m, "format": 1})
    size = (path / name).stat().st_size
    monkeypatch.setattr(bundle_files, cap, size - 1)  # the caps live with the file reads
    limit = f"{size:,} bytes, over the {size - 1:,}-byte limit"
    assert_refused(cli, "svd", path, built, name, limit, trust=True)


@pytest.mark.parametrize(
    "scale",
    [
        {"range": ["x", 5], "source": "declared"},
        {"range": [float("nan"), 5], "source": "declared"},
        {"range": [5, 1], "source": "inferred"},
        {"range": 5, "source": "declared"},
        {"range": [1, 5], "source": "guessed"},
        "1-5",
    ],
)
def test_a_stored_rating_scale_is_checked(
    scale: object, copy: Callable[[str], Path], cli: Callable[..., Probe], built: dict[str, Path]
) -> None:
    """``evaluate`` enforces the run's stored scale on held-out ratings: a tampered one was a traceback (a string)
    or refused every rating (NaN, low above high)."""
    path = copy("svd")
    edit_manifest(path, extra={**manifest(path)["extra"], "rating_range": scale})
    probe = cli(["evaluate", "--model-dir", path, "--test", built["rating_csv"]])
    assert_clean_error(probe, "manifest.json", "field 'extra.rating_range")
    with pytest.raises(DataError, match=r"manifest\.json, field 'extra\.rating_range"):
        load_bundle(path)


def test_a_recommender_without_its_vocabularies_is_refused(
    copy: Callable[[str], Path], cli: Callable[..., Probe], built: dict[str, Path]
) -> None:
    path = copy("bpr")
    m = manifest(path)
    del m["files"]["items.json"]
    write_manifest(path, m)
    assert_refused(cli, "bpr", path, built, "items.json", "needs its user and item vocabularies")


def test_every_file_of_every_kind_is_covered_by_a_checksum(built: dict[str, Path]) -> None:
    for kind in KINDS:
        listed = set(manifest(built[kind])["files"])
        on_disk = {p.name for p in built[kind].iterdir()} - {"manifest.json"}
        assert listed == on_disk and "weights.safetensors" in listed, kind


def test_the_packaged_encoder_of_an_untrusted_bundle_loads_offline(
    copy: Callable[[str], Path], no_network: list[object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The encoder a text query builds from the bundle's config: the packaged all-MiniLM-L6-v2, no connection."""
    pytest.importorskip("sentence_transformers", reason="needs attnrec[text]")
    if encoder_module.packaged_model_path("all-MiniLM-L6-v2") is None:
        pytest.skip("needs the packaged all-MiniLM-L6-v2 (attnrec[text])")
    monkeypatch.setenv("ATTNREC_HOME", str(tmp_path))  # the embedding cache
    path = copy("hybrid_csa")
    edit_manifest(path, config={**manifest(path)["config"], "query_backend": "torch"})
    model = load_bundle(path)
    assert isinstance(model, HybridCSA) and model.encoder.offline_only
    vector = model.encoder.encode_query("a funny animated movie")
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    assert no_network == []

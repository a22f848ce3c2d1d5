"""Fast encoder backends: agreement with the fp32 encoder, the missing-extra error, the ONNX export cache."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from attnrec.errors import ConfigError, DataError, MissingExtraError
from attnrec.text import SentenceEncoder
from attnrec.text.encoder import packaged_model_path
from attnrec.text.fast import FastTextModel, _pad, fast_encoder, int8_full_range

HAS_TEXT = (
    importlib.util.find_spec("sentence_transformers") is not None
    and packaged_model_path("all-MiniLM-L6-v2") is not None
)
HAS_ONNX = (
    importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
)
needs_text = pytest.mark.skipif(not HAS_TEXT, reason="needs attnrec[text]")
needs_onnx = pytest.mark.skipif(not (HAS_TEXT and HAS_ONNX), reason="needs attnrec[text] and attnrec[fast]")

SENTENCES = [
    "I need a charging cable",
    "These strings sound bright on my acoustic guitar and stay in tune for weeks.",
    "cheap tuner",
    "The microphone stand wobbles; the clamp broke after two gigs, so I returned it.",
    "great pedal",
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("attnrec-home")


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return SentenceEncoder(device="cpu", progress=False).encode(SENTENCES)


def test_pad_builds_ids_and_mask() -> None:
    ids, mask = _pad([[5, 6, 7], [8]], np.array([3, 1]))
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0]])
    assert ids.dtype == np.int64 and mask.dtype == np.int64


@needs_text
def test_unknown_backend_and_bad_model_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="onnx-int8"):
        FastTextModel(backend="fp16")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="local sentence-transformers folder"):
        FastTextModel(str(tmp_path / "no-such-model"))


@needs_text
def test_missing_onnxruntime_names_the_fast_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    model = FastTextModel(backend="onnx", home=tmp_path)
    with pytest.raises(MissingExtraError, match=r"attnrec\[fast\]") as err:
        model.encode(["a query"])
    assert "onnxruntime" in str(err.value)
    assert not (tmp_path / "onnx").exists()  # failed before exporting anything


@needs_text
@pytest.mark.parametrize("backend", ["torch", "int8"])
def test_torch_backends_agree_with_fp32(backend: str, reference: np.ndarray) -> None:
    enc = fast_encoder(backend=backend)  # type: ignore[arg-type]
    out = enc.encode(SENTENCES)
    cos = (out * reference).sum(1)
    assert out.shape == (5, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # int8: full-range activations where the CPU has VNNI; 7-bit ones elsewhere agree a little less (x86 without
    # VNNI would otherwise saturate 16-bit sums); per-tensor weights, the failure this guards against, give ~0.95
    # mean and ~0.79 worst
    floor = 0.9999 if backend == "torch" else (0.98 if int8_full_range() else 0.965)
    assert cos.mean() > floor and cos.min() > floor - 0.02, cos
    assert enc.model_id.split("+")[1] in ({"torch"} if backend == "torch" else {"int8-pc", "int8-pc-rr"})


@needs_onnx
def test_onnx_agrees_pads_batches_and_reuses_the_export(
    home: Path, reference: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = FastTextModel(backend="onnx", threads=1, home=home)
    enc = SentenceEncoder(first, progress=False)
    out = enc.encode(SENTENCES)
    assert first.exported and first.onnx_path is not None and first.onnx_path.parent == home / "onnx"
    np.testing.assert_allclose(out, reference, atol=2e-5)
    # one query at a time (no padding) gives the same rows as the length-sorted padded batch
    single = np.stack([enc.encode_query(s) for s in SENTENCES])
    np.testing.assert_allclose(single, out, atol=1e-5)
    stamp = first.onnx_path.stat().st_mtime_ns

    import torch

    def no_export(*_: object, **__: object) -> None:
        raise AssertionError("exported a second time")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    second = FastTextModel(backend="onnx", threads=1, home=home).load()
    assert not second.exported and second.onnx_path == first.onnx_path
    assert first.onnx_path.stat().st_mtime_ns == stamp
    # the same file in a new session: equal up to ONNX Runtime's run-to-run float noise (CPU-dependent kernels)
    np.testing.assert_allclose(second.encode(SENTENCES, normalize_embeddings=True), out, atol=1e-6, rtol=0)


@needs_onnx
def test_bert_exports_run_fused_and_a_failed_fusion_falls_back_to_the_plain_export(
    home: Path,
    reference: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import onnx

    model = FastTextModel(backend="onnx", threads=1, home=home).load()
    assert model.fused and model.onnx_path is not None and model.onnx_path.name.endswith("-fp32-fused.onnx")
    ops = {n.op_type for n in onnx.load(str(model.onnx_path), load_external_data=False).graph.node}
    assert {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization"} <= ops
    np.testing.assert_allclose(model.encode(SENTENCES, normalize_embeddings=True), reference, atol=2e-5)
    assert "-fused" in FastTextModel(backend="onnx-int8", home=home).model_id  # its own embedding-cache key
    assert "-fused" not in FastTextModel(backend="int8", home=home).model_id

    # a graph ONNX Runtime cannot fuse completely is refused (naming the export): the plain export is used,
    # logged, and the failure recorded so that the next load does not try again
    from onnxruntime.transformers import optimizer

    real = optimizer.optimize_model

    def partial(*args: object, **kwargs: object) -> object:
        fused = real(*args, **kwargs)
        fused.get_fused_operator_statistics = lambda: {"Attention": 5}  # type: ignore[method-assign]
        return fused

    monkeypatch.setattr(optimizer, "optimize_model", partial)
    fresh = tmp_path / "home"
    (fresh / "onnx").mkdir(parents=True)
    for f in (home / "onnx").glob("*-fp32.onnx"):  # reuse the plain export, so only the fusion runs
        (fresh / "onnx" / f.name).symlink_to(f)
    # an int8 model whose id (taken before loading) named the fused graph refuses the plain one, once
    early = FastTextModel(backend="onnx-int8", home=fresh)
    assert "-fused" in early.model_id
    with pytest.raises(DataError, match="create the encoder again"):
        early.load()
    assert "-fused" in early.model_id  # unchanged under anything that recorded it
    (fresh / "onnx" / next((fresh / "onnx").glob("*-unfusable.txt")).name).unlink()
    with caplog.at_level(logging.WARNING, logger="attnrec.text.fast"):
        plain = FastTextModel(backend="onnx", home=fresh).load()
    assert "did not fuse every attention layer" in caplog.text and "-fp32.onnx" in caplog.text
    assert plain.onnx_path is not None and plain.onnx_path.name.endswith("-fp32.onnx") and not plain.fused
    np.testing.assert_allclose(plain.encode(SENTENCES, normalize_embeddings=True), reference, atol=2e-5)
    assert not list((fresh / "onnx").glob("*fused*.onnx"))

    def no_fusion(*_: object, **__: object) -> None:
        raise AssertionError("tried to fuse again")

    monkeypatch.setattr(optimizer, "optimize_model", no_fusion)
    int8 = FastTextModel(backend="onnx-int8", home=fresh)
    assert "-fused" not in int8.model_id
    assert int8.load().onnx_path is not None and "fused" not in int8.onnx_path.name


@needs_onnx
def test_onnx_int8_agrees_with_fp32(home: Path, reference: np.ndarray) -> None:
    enc = fast_encoder(backend="onnx-int8", threads=1, home=home)
    out = enc.encode(SENTENCES)
    cos = (out * reference).sum(1)
    assert cos.mean() > 0.98 and cos.min() > 0.95, cos
    assert "+onnx-int8" in enc.model_id and enc.model_id != fast_encoder(backend="onnx", home=home).model_id


@needs_onnx
def test_max_length_truncates_like_sentence_transformers(home: Path) -> None:
    long_text = "the cable crackles whenever I move it " * 10
    texts = [long_text, "short one"]
    fast = fast_encoder(backend="onnx", home=home, max_length=16)
    ref = SentenceEncoder(device="cpu", progress=False, max_length=16)
    out, expected = fast.encode(texts), ref.encode(texts)
    assert fast.last_truncated == 1 == ref.last_truncated
    np.testing.assert_allclose(out, expected, atol=2e-5)
    model = fast.query_runner  # reports what its own last call cut, for one text and for a batch
    assert isinstance(model, FastTextModel)
    for given, cut in (([long_text], 1), (["short one"], 0), (texts, 1), ([long_text, long_text], 2)):
        model.encode(given)
        assert model.last_truncated == cut, given
    with pytest.raises(ConfigError, match="max_seq_length=600"):
        fast_encoder(backend="onnx", home=home, max_length=600)


@needs_text
@pytest.mark.parametrize("onnx_installed", [True, False])
def test_hybrid_csa_encodes_queries_on_a_lean_fp32_path_by_default(
    reference: np.ndarray, monkeypatch: pytest.MonkeyPatch, home: Path, onnx_installed: bool
) -> None:
    """query_backend="auto": the fp32 model in ONNX Runtime where attnrec[fast] is installed, else in PyTorch on
    the lean path; either way the vectors of sentence-transformers' own encode()."""
    from attnrec.models.rating.hybrid_csa import HybridCSA, core

    if onnx_installed:
        pytest.importorskip("onnxruntime")
    monkeypatch.setenv("ATTNREC_HOME", str(home))
    monkeypatch.setattr(core, "onnx_available", lambda: onnx_installed)
    enc = HybridCSA().encoder
    assert isinstance(enc.query_model, FastTextModel)
    assert enc.query_model.backend == ("onnx" if onnx_installed else "torch")
    cos = (enc.encode_queries(SENTENCES) * reference).sum(1)
    assert cos.min() > 0.9999, cos  # the same model: the vectors of sentence-transformers' own encode()
    assert HybridCSA(query_backend="sentence-transformers").encoder.query_model is None
    assert HybridCSA(query_backend="torch").encoder.query_model.backend == "torch"  # type: ignore[union-attr]


@needs_text
def test_an_onnx_backend_that_cannot_load_falls_back_when_asked(
    tmp_path: Path, reference: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    """query_backend="auto" asks for ONNX with a PyTorch fallback: an unusable ONNX cache folder (here a file)
    degrades to the same fp32 vectors on PyTorch, logged; without a fallback the error is raised."""
    import logging

    pytest.importorskip("onnxruntime")
    blocked = tmp_path / "home"
    (blocked / "onnx").parent.mkdir()
    (blocked / "onnx").write_text("a file where the ONNX cache folder should be")
    with pytest.raises(OSError):
        FastTextModel(backend="onnx", home=blocked).load()
    model = FastTextModel(backend="onnx", home=blocked, fallback="torch")
    with caplog.at_level(logging.WARNING, logger="attnrec.text.fast"):
        out = model.encode(SENTENCES, normalize_embeddings=True)
    assert model.backend == "torch" and "failed to load" in caplog.text
    assert (out * reference).sum(1).min() > 0.9999
    with pytest.raises(ConfigError, match="'onnx-fp16'"):  # an unknown fallback is named, not the backend
        FastTextModel(backend="onnx", fallback="onnx-fp16")  # type: ignore[arg-type]


def test_hybrid_csa_falls_back_to_sentence_transformers_for_a_layout_the_lean_path_cannot_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging

    from attnrec.models.rating.hybrid_csa import HybridCSA

    folder = tmp_path / "max-pool-model"
    folder.mkdir()
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"not really weights")
    with caplog.at_level(logging.WARNING, logger="attnrec.models.rating.hybrid_csa"):
        enc = HybridCSA(encoder=str(folder)).encoder
    assert enc.query_model is None  # queries go through sentence-transformers like corpora
    assert "unsupported modules" in caplog.text and "query_backend='auto'" in caplog.text

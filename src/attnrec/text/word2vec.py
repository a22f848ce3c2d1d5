"""Skip-gram word vectors (Mikolov et al. 2013) trained on the training reviews, aligned to a :class:`WordVocab`.

The review models' ``word_vectors="skipgram"`` option. gensim is an optional dependency (``pip install
'attnrec[reviews]'``), imported only here and only when called. Training is deterministic for a seed: one worker
thread and gensim's own seeded RNG (its hashing of words is fixed, not Python's salted ``hash``).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from attnrec.data.reviews import WordVocab
from attnrec.errors import ConfigError, require


def skipgram_vectors(
    tokens: pl.Series,
    vocab: WordVocab,
    dim: int,
    *,
    seed: int = 0,
    epochs: int = 5,
    window: int = 5,
    negative: int = 5,
) -> np.ndarray:
    """A (len(vocab), dim) float32 matrix: row ``k + 2`` = the skip-gram vector of ``vocab.words[k]``.

    ``tokens`` are the tokenized TRAINING reviews (:func:`attnrec.data.reviews.tokenize`). Row 0 (padding) is zero;
    row 1 (out-of-vocabulary) and any vocabulary word the model did not keep are drawn from N(0, σ²) with σ the
    standard deviation of the trained vectors (seeded), so they sit at the same scale.
    """
    if dim < 1 or epochs < 1 or window < 1:
        raise ConfigError(f"skip-gram: dim, epochs and window must be >= 1, got {dim}, {epochs}, {window}")
    models = require("gensim.models", "reviews")
    kept = set(vocab.words)
    # out-of-vocabulary words stay in the sentences as one marker, so windows keep their real distances
    sentences = [[w if w in kept else "<oov>" for w in s] for s in tokens.to_list() if s]
    rng = np.random.default_rng(seed)
    out = np.zeros((len(vocab), dim), dtype=np.float32)
    if not sentences:
        out[1:] = rng.normal(0.0, 0.1, (len(vocab) - 1, dim))
        return out
    model = models.Word2Vec(
        sentences,
        vector_size=dim,
        window=window,
        min_count=1,
        sg=1,
        negative=negative,
        workers=1,
        seed=seed,
        epochs=epochs,
    )
    wv = model.wv
    found = np.array([w in wv.key_to_index for w in vocab.words], dtype=bool)
    trained = np.stack([wv[w] for w, f in zip(vocab.words, found, strict=True) if f]) if found.any() else None
    scale = float(trained.std()) if trained is not None and trained.size > 1 else 0.1
    out[1:] = rng.normal(0.0, scale, (len(vocab) - 1, dim))
    if trained is not None:
        out[2:][found] = trained
    return out

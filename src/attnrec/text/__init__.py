"""Text features: a sentence encoder, an on-disk embedding cache, and builders of item/user texts.

Importing this package does not import sentence-transformers; that happens when a real model is first used
(install it with ``pip install 'attnrec[text]'``).
"""

from __future__ import annotations

from attnrec.text.builders import (
    item_text_from_meta,
    item_text_from_reviews,
    movielens_item_text,
    texts_for_vocab,
    user_text_from_reviews,
)
from attnrec.text.cache import EmbeddingCache, text_keys
from attnrec.text.encoder import DEFAULT_MODEL, HashingTextModel, SentenceEncoder, TextModel

__all__ = [
    "DEFAULT_MODEL",
    "EmbeddingCache",
    "HashingTextModel",
    "SentenceEncoder",
    "TextModel",
    "item_text_from_meta",
    "item_text_from_reviews",
    "movielens_item_text",
    "text_keys",
    "texts_for_vocab",
    "user_text_from_reviews",
]

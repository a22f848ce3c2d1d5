"""Request and response bodies of the HTTP service (:mod:`attnrec.serving.app`), as pydantic models.

Every request model forbids unknown fields and bounds every list and string, so a bad request is a 422 whose
``detail`` names the field (``["body", "k"]``) before any model code runs. Responses are typed too: the OpenAPI
document the app publishes describes exactly what comes back (schemathesis checks every response against it).

The service core (:mod:`attnrec.serving.service`) takes and returns these models; it imports no web framework.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: the most items one recommendation returns, and the most rows one /predict call scores
MAX_K = 1000
MAX_BATCH = 1024
#: the longest id or text query accepted, in characters (MiniLM reads 256 tokens; a query is cut there anyway)
MAX_ID_CHARS = 512
MAX_QUERY_CHARS = 4096
#: the most items an allow or deny list, or a history, may name
MAX_LIST = 10_000

Id = Field(min_length=1, max_length=MAX_ID_CHARS)
#: which scoring path answered a recommendation
RecPath = Literal["known_user", "new_user", "text", "history"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Request):
    """Top-k items for a known user (``user_id``), a text query (``query``, optionally with ``user_id``) or a
    history given now (``items``, optionally with ``user_id``: that user's recent items)."""

    user_id: str | None = Field(None, min_length=1, max_length=MAX_ID_CHARS)
    query: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS)
    items: list[str] | None = Field(None, min_length=1, max_length=MAX_LIST)
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    allow: list[str] | None = Field(
        None, max_length=MAX_LIST, description="rank only these item ids (unknown ids are ignored)"
    )
    deny: list[str] | None = Field(None, max_length=MAX_LIST, description="never return these item ids")
    domain: str | None = Field(
        None, min_length=1, max_length=MAX_ID_CHARS, description="target domain (cross-domain models)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> RecommendRequest:
        if self.user_id is None and self.query is None and self.items is None:
            raise ValueError("give user_id, query or items")
        if self.query is not None and self.items is not None:
            raise ValueError("give query or items, not both")
        if self.query is not None and not self.query.strip():
            raise ValueError("query is blank")
        return self


class Shares(BaseModel):
    """Attention shares of one prediction (hybrid_csa): the mean attention paid to each token; they sum to 1
    over the tokens the fusion has (NaN-free: a model without attention gives no shares at all)."""

    user: float
    item: float
    text: float
    user_text: float | None = None


class RecommendedItem(BaseModel):
    rank: int
    item_id: str
    score: float
    title: str | None = None
    predicted_rating: float | None = None
    relevance: float | None = None
    shares: Shares | None = None


class RecommendResponse(BaseModel):
    model: str
    path: RecPath
    user_id: str | None
    #: True when the user is not in the model (served as a new user: by text, history or popularity)
    new_user: bool
    #: the cold-start answer was used: an unknown user with nothing else to go on gets the most popular items
    cold_start: bool
    items: list[RecommendedItem]
    #: history, allow or deny ids the model does not know (left out, never an error)
    unknown_items: list[str] = []
    #: the text query was cut to the encoder's maximum length
    query_truncated: bool | None = None
    notes: list[str] = []


class Pair(_Request):
    user_id: str = Id
    item_id: str = Id


class PredictRequest(_Request):
    """Ratings (rating models), scores (top-K models) for ``pairs``, or click probabilities for CTR ``rows``
    (the raw columns the model was trained on: field name -> value)."""

    pairs: list[Pair] | None = Field(None, min_length=1, max_length=MAX_BATCH)
    rows: list[dict[str, str | int | float | None]] | None = Field(None, min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _one_kind(self) -> PredictRequest:
        if (self.pairs is None) == (self.rows is None):
            raise ValueError("give pairs or rows (exactly one)")
        return self


ColdStart = Literal["unknown_user", "unknown_item", "unknown_user_and_item"]


def cold_start_flag(known_user: bool, known_item: bool) -> ColdStart | None:
    """Why a pair has no prediction: None when the model knows both ids (POST /predict and `attnrec predict`)."""
    if known_user and known_item:
        return None
    if known_user:
        return "unknown_item"
    return "unknown_user" if known_item else "unknown_user_and_item"


class Prediction(BaseModel):
    #: None for a pair whose user or item the model does not know (``cold_start`` says which)
    value: float | None
    user_id: str | None = None
    item_id: str | None = None
    cold_start: ColdStart | None = None


class PredictResponse(BaseModel):
    model: str
    #: what ``value`` is: a rating on the training scale, a ranking score, or a click probability
    kind: Literal["rating", "score", "probability"]
    predictions: list[Prediction]


class SimilarItem(BaseModel):
    rank: int
    item_id: str
    #: cosine similarity in the model's item space, in [-1, 1]
    score: float
    title: str | None = None


class SimilarResponse(BaseModel):
    model: str
    item_id: str
    title: str | None = None
    #: which vectors the cosine is over (e.g. "bpr item embeddings")
    space: str
    items: list[SimilarItem]


class ExplainRequest(_Request):
    """Attention shares for ``user_id`` with each of ``item_ids``; ``query`` (optional) is the text token in place
    of each item's own text, as in a text query."""

    user_id: str = Id
    item_ids: list[str] = Field(min_length=1, max_length=MAX_K)
    query: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS)


class Explanation(BaseModel):
    """One prediction's attention: hybrid_csa's token ``shares``; or safmr's ``feature_shares`` (the share of
    attention each of its n CNN features receives, summing to 1), ``abs_cos`` (mean |cos| between the attention's
    input and output rows) and ``has_text`` (False: the user's or item's training reviews hold no word)."""

    item_id: str
    predicted_rating: float
    shares: Shares | None
    title: str | None = None
    feature_shares: list[float] | None = None
    abs_cos: float | None = None
    has_text: bool | None = None


class ExplainResponse(BaseModel):
    model: str
    user_id: str
    explanations: list[Explanation]


class ReloadRequest(_Request):
    #: the model to reload from its bundle folder; None reloads every model
    model: str | None = Field(None, min_length=1, max_length=MAX_ID_CHARS)


class ReloadResponse(BaseModel):
    reloaded: list[str]
    fingerprints: dict[str, str]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    models: dict[str, bool]


class ErrorBody(BaseModel):
    """Every error the service answers itself (4xx): what went wrong, and the request field where there is one."""

    detail: str
    field: str | None = None

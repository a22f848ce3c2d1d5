"""The one feature layer every CTR model uses: a :class:`~attnrec.data.batches.CTRBatch` -> field embeddings.

Field order, everywhere: the schema's categorical fields, then its numeric fields, then its multi-valued fields
(``F = n_cat + n_num + n_multi``).

* categorical field ``f`` with index ``x`` -> row ``offset_f + x`` of one shared table (index 0 = missing/OOV
  has its own learned row per field);
* numeric field ``f`` with value ``v`` -> ``v * w_f`` (one learned vector per field, as in FM/AutoInt);
* multi-valued field ``f`` with tokens ``x_1..x_L`` (0 = padding) -> the masked sum or mean (``FieldSpec.pooling``)
  of the token rows; a bag with no tokens embeds to zeros.

:class:`FeatureEmbedding` with ``dim=1`` is the first-order (linear) part: :class:`FeatureLinear` sums it over
fields and adds a global bias.
"""

from __future__ import annotations

import torch
from torch import nn

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema
from attnrec.errors import DataError


def _offsets(sizes: list[int]) -> torch.Tensor:
    out = torch.zeros(len(sizes), dtype=torch.long)
    if len(sizes) > 1:
        out[1:] = torch.cumsum(torch.tensor(sizes[:-1], dtype=torch.long), 0)
    return out


def check_batch_widths(schema: FeatureSchema, batch: CTRBatch) -> None:
    """Raise :class:`DataError` naming the part when ``batch``'s widths do not match ``schema``."""
    want = {
        "categorical": (schema.n_categorical,),
        "numeric": (schema.n_numeric,),
        "multi": (schema.n_multi, schema.multi_len),
    }
    for part, shape in want.items():
        got = tuple(getattr(batch, part).shape[1:])
        if got != shape:
            names = [f.name for f in getattr(schema, part)]
            raise DataError(
                f"batch has {part} width {got}",
                field=part,
                value=got,
                expected=f"width {shape} for the model's {part} fields {names}",
            )


class FeatureEmbedding(nn.Module):
    """Per-field embeddings of a CTR batch: (B, n_fields, dim).

    ``schema`` must be fitted (every indexed field knows ``vocab_size``). Categorical and multi-valued fields
    share one table of ``sum(vocab_sizes)`` rows with per-field offsets (one gather per batch, not one module
    per field). ``init_std``: rows and numeric vectors start N(0, init_std^2).
    """

    cat_offsets: torch.Tensor
    multi_offsets: torch.Tensor
    multi_mean: torch.Tensor

    def __init__(self, schema: FeatureSchema, dim: int, *, init_std: float = 0.01) -> None:
        super().__init__()
        if not schema.is_fitted:
            raise DataError(
                "the feature schema has fields without a vocabulary size",
                field=next(f.name for f in schema.fields if not f.is_numeric and f.vocab_size <= 0),
                expected="a schema fitted by FeatureEncoder.fit",
            )
        self.schema = schema
        self.dim = dim
        cat_sizes = schema.vocab_sizes
        multi_sizes = schema.multi_vocab_sizes
        self.n_cat, self.n_num, self.n_multi = schema.n_categorical, schema.n_numeric, schema.n_multi
        self.n_fields = self.n_cat + self.n_num + self.n_multi
        if self.n_fields == 0:
            raise DataError("the feature schema has no fields", expected="at least one input field")
        total = sum(cat_sizes) + sum(multi_sizes)
        self.table = nn.Embedding(max(total, 1), dim)
        nn.init.normal_(self.table.weight, std=init_std)
        self.numeric_weight = nn.Parameter(torch.randn(self.n_num, dim) * init_std)
        offsets = _offsets(cat_sizes + multi_sizes)
        self.register_buffer("cat_offsets", offsets[: self.n_cat].clone(), persistent=False)
        self.register_buffer("multi_offsets", offsets[self.n_cat :].clone(), persistent=False)
        mean = torch.tensor([f.pooling == "mean" for f in schema.multi], dtype=torch.bool)
        self.register_buffer("multi_mean", mean, persistent=False)

    def forward(self, batch: CTRBatch) -> torch.Tensor:
        """Field embeddings, (B, n_fields, dim), fields in the order categorical, numeric, multi."""
        check_batch_widths(self.schema, batch)
        parts = []
        if self.n_cat:
            parts.append(self.table(batch.categorical + self.cat_offsets))
        if self.n_num:
            parts.append(batch.numeric.unsqueeze(-1) * self.numeric_weight)
        if self.n_multi:
            idx = batch.multi  # (B, M, L)
            mask = (idx > 0).unsqueeze(-1).to(self.table.weight.dtype)
            bags = (self.table(idx + self.multi_offsets[:, None]) * mask).sum(2)  # (B, M, dim)
            count = mask.sum(2).clamp_min(1.0)
            parts.append(torch.where(self.multi_mean[:, None], bags / count, bags))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class FeatureLinear(nn.Module):
    """First-order term ``b + sum_f w_f(x_f)``: (B,) logits contribution; ``w`` is a dim-1 FeatureEmbedding."""

    def __init__(self, schema: FeatureSchema) -> None:
        super().__init__()
        self.weights = FeatureEmbedding(schema, 1, init_std=0.0)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, batch: CTRBatch) -> torch.Tensor:
        """(B,) the linear logit; use :meth:`terms` for the per-field terms (e.g. to regularise them)."""
        return self.terms(batch).sum(1) + self.bias

    def terms(self, batch: CTRBatch) -> torch.Tensor:
        """(B, n_fields) each field's first-order weight for its value."""
        return self.weights(batch).squeeze(-1)

    @torch.no_grad()
    def copy_from(self, other: FeatureLinear) -> None:
        """Set this term's weights and bias to ``other``'s (a warm start, ``CTRConfig.linear_init``).

        Both must be built from the same fitted schema: the same fields in the same order with the same vocabulary
        sizes give the same table offsets, so row ``r`` is the same (field, index) in both and the copy lines up
        feature by feature. Any other schema raises :class:`DataError` (a same-shaped table from another encoder
        would silently move weights to other features)."""
        if other.weights.schema != self.weights.schema:
            raise DataError(
                "the first-order term to copy was built from another feature schema",
                field="schema",
                expected="the same fitted schema (fields, order and vocabulary sizes) as this model's",
            )
        self.weights.table.weight.copy_(other.weights.table.weight)
        self.weights.numeric_weight.copy_(other.weights.numeric_weight)
        self.bias.copy_(other.bias)


def l2_per_row(*tensors: torch.Tensor) -> torch.Tensor:
    """Sum of squares of every tensor, divided by the batch size (the first axis): a scalar penalty."""
    total = tensors[0].new_zeros(())
    for t in tensors:
        total = total + t.float().pow(2).sum() / max(1, t.shape[0])
    return total

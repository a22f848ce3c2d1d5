"""CTR test support: which registered CTR models have a first-order term, and the options that give them one."""

from __future__ import annotations

from typing import Any

import torch

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema, FieldSpec
from attnrec.models.base import TaskKind, available_models


def tiny_ctr() -> tuple[FeatureSchema, CTRBatch]:
    """A case small enough to compute by hand: two categorical fields ``a`` and ``b`` (vocabularies 3 and 2, so
    first-order table rows 0-2 and 3-4) and a batch of two rows, (a=1, b=0) clicked and (a=2, b=1) not."""
    schema = FeatureSchema(fields=[FieldSpec(name="a", vocab_size=3), FieldSpec(name="b", vocab_size=2)])
    batch = CTRBatch(
        torch.tensor([1.0, 0.0]),
        torch.tensor([[1, 0], [2, 1]]),
        torch.zeros(2, 0),
        torch.zeros(2, 0, 0, dtype=torch.long),
    )
    return schema, batch


def first_order_models() -> dict[str, dict[str, Any]]:
    """Every registered CTR model but LR that has, or can be given, a first-order term ``b + sum_f w_f(x_f)``
    (``CTRConfig.has_first_order``), with the config options that give it one (``{}`` where it has one by
    default, ``{"use_linear": True}`` for autoint, dcn and secn). Read from the registry, so a new model is
    covered without editing a list. LR is left out: its first-order term is the whole model."""
    out: dict[str, dict[str, Any]] = {}
    for name, cls in available_models().items():
        if cls.task != TaskKind.CTR or name == "lr":
            continue
        config_class: Any = cls.config_class
        if config_class().has_first_order():
            out[name] = {}
        elif "use_linear" in config_class.model_fields and config_class(use_linear=True).has_first_order():
            out[name] = {"use_linear": True}
    return out

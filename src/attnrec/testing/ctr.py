"""CTR test support: which registered CTR models have a first-order term, and the options that give them one."""

from __future__ import annotations

from typing import Any

from attnrec.models.base import TaskKind, available_models


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

"""The two calls whose spelling changed in issue 12's platform move, so one benchmark harness runs on both sides.

Issue 12 moved evaluation out of the models (``model.evaluate(data)`` became
``attnrec.evaluation.protocols.evaluate(model, data)``) and side inputs into one argument
(``fit(..., items=frame)`` became ``fit(..., side=SideInputs(items=frame))``). Reproducing a benchmark row across the
move means running *the same* harness against the code before it (``PYTHONPATH=<old checkout>/src``) and after it;
these helpers pick whichever spelling the imported ``attnrec`` has, and nothing else differs.
"""

from __future__ import annotations

from typing import Any


def evaluate(model: Any, data: Any) -> dict[str, float]:
    """The model's default-protocol metrics on ``data`` (an encoded split, or CTR rows), e.g. rmse/mae for rating."""
    try:
        from attnrec.evaluation.protocols import evaluate as protocol_evaluate
    except ImportError:  # before issue 12: evaluation lived on the model
        return dict(model.evaluate(data))
    return protocol_evaluate(model, data)


def side(items: Any) -> dict[str, Any]:
    """``fit`` keyword arguments passing item metadata ``items`` (a frame keyed by item_id, or None)."""
    try:
        from attnrec.data.side import SideInputs
    except ImportError:  # before issue 12: fit(..., items=frame)
        return {"items": items}
    return {"side": SideInputs(items=items)}

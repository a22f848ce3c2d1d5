"""The orthogonality diagnostic of attention-fusion modules: mean |cos(X, X')|.

Lee et al. ("Cross-attention Secretly Performs Orthogonal Alignment in Recommendation Models", 2025) compare the
query stream ``X`` of a cross-attention module with its output ``X' = CrossAttention(X, Y, Y)`` position by
position: |cos| near 1 means the module mostly re-weights what ``X`` already holds ("residual alignment"), near 0
that it adds a direction ``X`` lacked ("orthogonal alignment"). The paper reports this per module at the best
epoch and relates it to NDCG@10.

The functions are model-agnostic (tensors in, a number out), so any attention-fusion module can report it: the
sequential ``gca`` modules feed :class:`CosineMeter` themselves, and :func:`attention_orthogonality` measures the
self-attention layers of hybrid_csa, secn and autoint (their input tokens against their attention read-out) on
any forward pass; every fit of a model with such layers logs theirs per validated epoch through
:meth:`attnrec.models.base.Estimator.validator` (:func:`has_self_attention`, :func:`orthogonality_metrics`). safmr
and mrcsaf report theirs through their models' diagnostics, with these functions (safmr per prediction with
:func:`mean_abs_cosine_per_row`), so every model leaves a zero vector out by the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from attnrec.models.layers.attention import SelfAttentionBlock
from attnrec.models.layers.interaction import InteractingLayer

#: a vector whose norm is below this counts as zero: its cosine is undefined and the position is left out
_TINY = 1e-12


class CosineMeter:
    """Running mean of |cos(X, X')| over positions, accumulated batch by batch (sums, so batches of any size
    merge exactly): :meth:`add` a batch, :attr:`value` reads the mean (NaN before any position)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, x: torch.Tensor, x_prime: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add every position of ``x`` / ``x_prime`` ``(..., d)`` where ``mask`` ``(...)`` (bool) is True."""
        cos = abs_cosine(x, x_prime)
        keep = torch.isfinite(cos)
        if mask is not None:
            keep = keep & mask.to(cos.device)
        self.total += float(cos[keep].double().sum())
        self.count += int(keep.sum())

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else float("nan")


def abs_cosine(x: torch.Tensor, x_prime: torch.Tensor) -> torch.Tensor:
    """|cos| between matching vectors of ``x`` and ``x_prime`` (both ``(..., d)``): shape ``(...)``, float32 or
    wider; NaN where either vector is (numerically) zero, since its direction is undefined."""
    if x.shape != x_prime.shape:
        raise ValueError(f"abs_cosine: x {tuple(x.shape)} and x' {tuple(x_prime.shape)} differ in shape")
    a, b = x.float(), x_prime.float()
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    cos = (a * b).sum(-1) / (na * nb).clamp_min(_TINY)
    return torch.where((na > _TINY) & (nb > _TINY), cos.abs(), torch.full_like(cos, float("nan")))


def mean_abs_cosine(x: torch.Tensor, x_prime: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean over positions of |cos(x, x')| (``(..., d)`` each), over the positions where ``mask`` ``(...)`` is
    True (e.g. non-padding) and both vectors are non-zero. NaN when no position qualifies."""
    meter = CosineMeter()
    meter.add(x, x_prime, mask)
    return meter.value


def mean_abs_cosine_per_row(x: torch.Tensor, x_prime: torch.Tensor) -> torch.Tensor:
    """Per row, the mean over its positions of |cos(x, x')|: ``(..., n, d)`` each -> ``(...)``, float32 or wider,
    by :class:`CosineMeter`'s rule (a position where either vector is zero is left out; NaN for a row with no
    position left). For a model that reports the diagnostic per prediction: safmr, one row per (user, item) pair,
    its n CNN features the positions."""
    cos = abs_cosine(x, x_prime)
    keep = torch.isfinite(cos)
    return torch.where(keep, cos, torch.zeros_like(cos)).sum(-1) / keep.sum(-1)  # 0 / 0 = NaN: nothing left


def self_attention_output(
    layer: nn.Module, x: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``X'``, the attention read-out of a self-attention layer for its input tokens ``x`` ``(B, T, d)``: the
    value mix ``softmax(QKᵀ/s) V`` (heads concatenated), after the output projection ``W^O`` where the layer has
    one, before any residual, norm or activation. ``weights`` ``(B, H, T, T)``: the layer's own attention (else
    recomputed from ``x``, without dropout).

    Layers: :class:`~attnrec.models.layers.attention.SelfAttentionBlock` (hybrid_csa; its pre-norm is part of
    the projection) and :class:`~attnrec.models.layers.interaction.InteractingLayer` (secn, autoint)."""
    b, t, _ = x.shape
    if isinstance(layer, SelfAttentionBlock):
        # the class's projection: attention_orthogonality wraps the instance's to watch its inputs
        q, k, v = SelfAttentionBlock.project(layer, x).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, dh)
        if weights is None:
            weights = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(layer.head_dim), dim=-1)
        return layer.out((weights @ v).transpose(1, 2).reshape(b, t, layer.dim))
    if isinstance(layer, InteractingLayer):

        def heads(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, layer.n_heads, layer.head_dim).transpose(1, 2)

        v = heads(layer.value(x))
        if weights is None:
            scores = heads(layer.query(x)) @ heads(layer.key(x)).transpose(-1, -2)
            weights = torch.softmax(scores / layer.head_dim**0.5 if layer.scaled else scores, dim=-1)
        return (weights @ v).transpose(1, 2).reshape(b, t, -1)
    raise TypeError(f"self_attention_output: not a known self-attention layer: {type(layer).__name__}")


@contextmanager
def attention_orthogonality(root: nn.Module) -> Iterator[dict[str, CosineMeter]]:
    """While the context is open, every self-attention layer under ``root`` (see :func:`self_attention_output`)
    adds the |cos(X, X')| of each call to a :class:`CosineMeter`, keyed by the layer's name in ``root`` (the
    paper's diagnostic beyond cross-domain models: hybrid_csa's token attention, secn's and autoint's field
    attention). Run any forward pass inside, then read ``meters[name].value``::

        with attention_orthogonality(model.module) as meters:
            model.predict_proba(data)            # secn: its forward calls the attention
        {name: m.value for name, m in meters.items()}

    An :class:`InteractingLayer` records whenever its ``attend`` runs (its forward: X' is the read-out the layer
    computes anyway, so recording costs only the |cos|). A :class:`SelfAttentionBlock` records whenever
    its ``project`` receives stacked tokens ``(B, T, d)`` (hybrid_csa's forward: training and ``predict``; its pair
    scorer, behind ``score_users`` and ``recommend``, projects token tables one by one and is not seen: measure
    hybrid_csa with ``predict`` or ``module.loss(batch)``).
    A layer whose output width differs from its input's (an InteractingLayer with ``heads · head_dim != d``) has
    no |cos| and is skipped. Nothing is left attached on exit."""
    meters: dict[str, CosineMeter] = {}
    undo: list[Callable[[], None]] = []

    def record(name: str, x: torch.Tensor, x_prime: torch.Tensor) -> None:
        if x.shape == x_prime.shape:
            meters.setdefault(name, CosineMeter()).add(x.detach(), x_prime.detach())

    try:
        for name, layer in root.named_modules():
            if isinstance(layer, InteractingLayer):
                attend = layer.attend

                def read_out(
                    x: torch.Tensor,
                    name: str = name,
                    attend: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = attend,
                ) -> tuple[torch.Tensor, torch.Tensor]:
                    out, weights = attend(x)  # X' as the layer computes it: nothing recomputed
                    with torch.no_grad():
                        record(name, x, out)
                    return out, weights

                undo.append(_shadow(layer, "attend", read_out))
            elif isinstance(layer, SelfAttentionBlock):
                original = layer.project

                def project(
                    x: torch.Tensor,
                    layer: SelfAttentionBlock = layer,
                    name: str = name,
                    original: Callable[[torch.Tensor], torch.Tensor] = original,
                ) -> torch.Tensor:
                    qkv = original(x)
                    if x.dim() == 3:
                        with torch.no_grad():
                            record(name, x, _block_read_out(layer, qkv))
                    return qkv

                undo.append(_shadow(layer, "project", project))
        yield meters
    finally:
        for step in reversed(undo):
            step()


def _block_read_out(layer: SelfAttentionBlock, qkv: torch.Tensor) -> torch.Tensor:
    """:func:`self_attention_output` of a :class:`SelfAttentionBlock` from the ``qkv`` ``(B, T, 3, H, dh)`` its
    ``project`` returned (not projected again); a few tokens (hybrid_csa's 3-4) by broadcasting, as the block's
    own ``mix`` does (several times faster on CPU than a batched matmul of T×T matrices)."""
    b, t = qkv.shape[:2]
    scale = math.sqrt(layer.head_dim)
    if t > 4:
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, dh)
        weights = torch.softmax((q @ k.transpose(-1, -2)) / scale, dim=-1)
        return layer.out((weights @ v).transpose(1, 2).reshape(b, t, layer.dim))
    q, k, v = qkv.unbind(2)  # 3 x (B, T, H, dh)
    w = torch.softmax((q[:, :, None] * k[:, None]).sum(-1) / scale, dim=2)  # (B, Tq, Tk, H)
    return layer.out((w[..., None] * v[:, None]).sum(2).reshape(b, t, layer.dim))


def _shadow(layer: nn.Module, attr: str, method: Callable[..., Any]) -> Callable[[], None]:
    """Shadow ``layer``'s method ``attr`` with ``method`` (an instance attribute); returns the undo, which puts back
    what was there before (an enclosing :func:`attention_orthogonality`'s wrapper), else removes the attribute so
    the class's method shows again."""
    before = vars(layer).get(attr)
    setattr(layer, attr, method)

    def undo() -> None:
        if before is None:
            delattr(layer, attr)
        else:
            setattr(layer, attr, before)

    return undo


def has_self_attention(root: nn.Module) -> bool:
    """True when ``root`` holds a layer :func:`attention_orthogonality` measures (an :class:`InteractingLayer` or a
    :class:`SelfAttentionBlock`): secn and autoint, hybrid_csa with an attention fusion."""
    return any(isinstance(m, InteractingLayer | SelfAttentionBlock) for m in root.modules())


def orthogonality_metrics(
    meters: dict[str, CosineMeter],
    gather: Callable[[dict[str, tuple[float, int]]], list[dict[str, tuple[float, int]]]] | None = None,
) -> dict[str, float]:
    """``{"abs_cos[<layer name>]": mean |cos|}`` from the meters of :func:`attention_orthogonality`. ``gather``:
    where each process saw a shard of the rows (a distributed run), a collective returning every rank's
    ``{name: (sum, count)}`` in rank order (``attnrec.training.distributed.all_gather_objects``: every rank must
    call it, with or without meters); the sums and counts are added in that order, so every rank gets the same
    numbers. A layer no position qualified for (on any rank) has no mean (NaN) and is left out."""
    mine = {name: (m.total, m.count) for name, m in meters.items()}
    parts = gather(mine) if gather is not None else [mine]
    total: dict[str, float] = {}
    count: dict[str, int] = {}
    for part in parts:
        for name, (t, c) in part.items():
            total[name] = total.get(name, 0.0) + t
            count[name] = count.get(name, 0) + c
    return {f"abs_cos[{name}]": total[name] / count[name] for name in sorted(total) if count[name]}

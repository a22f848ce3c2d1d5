"""The orthogonality diagnostic of attention-fusion modules: mean |cos(X, X')|.

Lee et al. ("Cross-attention Secretly Performs Orthogonal Alignment in Recommendation Models", 2025) compare the
query stream ``X`` of a cross-attention module with its output ``X' = CrossAttention(X, Y, Y)`` position by
position: |cos| near 1 means the module mostly re-weights what ``X`` already holds ("residual alignment"), near 0
that it adds a direction ``X`` lacked ("orthogonal alignment"). The paper reports this per module at the best
epoch and relates it to NDCG@10.

The function is model-agnostic (tensors in, a number out), so any attention-fusion module can report it: the
sequential ``gca`` modules, and the attention blocks of hybrid_csa, secn and safmr (their input tokens against
their attention outputs).
"""

from __future__ import annotations

import torch

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

"""Multi-head self-attention over a short token sequence, returning its attention weights.

Used by hybrid_csa (tokens = [user, item, text]) and meant for any model that needs to *explain* which token a
prediction attended to. The block is the scaled dot-product multi-head attention of Vaswani et al. (2017):

    head_h = softmax(Q_h K_hᵀ / √d_h) V_h,  Q_h = X W_h^Q, K_h = X W_h^K, V_h = X W_h^V
    MHA(X) = Concat(head_1, …, head_H) W^O

with a LayerNorm placed by ``norm`` (``"pre"``: on the input tokens before Q/K/V; ``"post"``: on the output;
``"none"``) and an optional residual connection (``X + MHA(·)``, added before a post-norm / to the raw input for a
pre-norm, as in the standard Transformer variants).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from attnrec.errors import ConfigError

NormPlace = Literal["pre", "post", "none"]
#: sequences of at most this many tokens, in batches of at most _SHORT_ROWS, take the broadcasting path of
#: :meth:`SelfAttentionBlock.mix` (its (B, T, T, H, d_h) product is several times faster than a batched matmul of
#: T×T matrices on CPU, but for large B costs more memory than it saves time)
_SHORT = 4
_SHORT_ROWS = 16384


class SelfAttentionBlock(nn.Module):
    """Multi-head self-attention with layer norm: ``(B, T, dim) -> (B, T, dim)`` plus weights ``(B, H, T, T)``.

    ``weights[b, h, q, t]`` is the attention query token ``q`` pays to key token ``t`` in head ``h``; each row
    (over ``t``) sums to 1. ``dropout`` applies to the weights used to mix values (training only); the returned
    weights are the undropped softmax, so explanations do not depend on dropout draws.
    ``key_padding_mask`` (``(B, T)`` bool, True = ignore) hides padded tokens from every query.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        dropout: float = 0.0,
        norm: NormPlace = "pre",
        residual: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"attention dim {dim} must be divisible by heads {heads}")
        if norm not in ("pre", "post", "none"):
            raise ConfigError(f"attention norm must be 'pre', 'post' or 'none', got {norm!r}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.norm_place, self.residual = norm, residual
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)
        self.norm = nn.LayerNorm(dim) if norm != "none" else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mix(self.project(x), x, key_padding_mask)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Q, K, V of tokens ``(..., dim)`` -> ``(..., 3, heads, head_dim)`` (the pre-norm included).

        Each token is projected on its own, so a token shared by many sequences (one user against many items)
        can be projected once and gathered: ``mix(project(table)[index])`` equals ``forward(table[index])``."""
        h = self.norm(x) if self.norm_place == "pre" else x
        return self.qkv(h).unflatten(-1, (3, self.heads, self.head_dim))

    def mix(
        self,
        qkv: torch.Tensor,
        x: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        *,
        pool: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention from projected tokens ``qkv`` ``(B, T, 3, H, dh)`` (:meth:`project`): output ``(B, T, dim)``
        (``pool``: its mean over tokens, ``(B, dim)``) and weights ``(B, H, T, T)``. ``x`` (B, T, dim), the
        input tokens, is needed only with ``residual``. Without residual or post-norm, pooling comes before
        W^O (it is linear), so a pooled call does T times less output projection."""
        b, t = qkv.shape[:2]
        if t > _SHORT or b > _SHORT_ROWS:
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3×(B,H,T,dh)
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if key_padding_mask is not None:
                scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            dropped = self.dropout(weights)
            if pool and not self.residual and self.norm_place != "post":
                share = dropped.mean(2)  # (B,H,T): mean over queries
                mixed = (share[..., None] * v).sum(2).reshape(b, self.dim)
                return self.out(mixed), weights
            mixed = (dropped @ v).transpose(1, 2).reshape(b, t, self.dim)
        else:
            # a few tokens (hybrid_csa's 3-4): B×H products of T×dh by dh×T matrices are too small for a batched
            # matmul to pay off; broadcasting over (B, T_q, T_k, H, dh) is several times faster on CPU
            q, k, v = qkv.unbind(2)  # 3×(B,T,H,dh)
            scores = (q[:, :, None] * k[:, None]).sum(-1) / math.sqrt(self.head_dim)  # (B,Tq,Tk,H)
            if key_padding_mask is not None:
                scores = scores.masked_fill(key_padding_mask[:, None, :, None], float("-inf"))
            w = torch.softmax(scores, dim=2)
            weights = w.permute(0, 3, 1, 2)  # (B,H,Tq,Tk)
            dropped = self.dropout(w)
            if pool and not self.residual and self.norm_place != "post":
                share = dropped.mean(1)  # (B,Tk,H): mean over queries
                mixed = (share[..., None] * v).sum(1).reshape(b, self.dim)
                return self.out(mixed), weights
            mixed = (dropped[..., None] * v[:, None]).sum(2).reshape(b, t, self.dim)
        out = self.out(mixed)
        if self.residual:
            if x is None:
                raise ConfigError("SelfAttentionBlock.mix: residual=True needs the input tokens x")
            out = x + out
        if self.norm_place == "post":
            out = self.norm(out)
        return (out.mean(1) if pool else out), weights

    def mix_tokens(
        self, qkv: Sequence[torch.Tensor], x: Sequence[torch.Tensor] | None = None, *, pool: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention over T tokens given one by one: ``qkv[t]`` ``(..., 3, H, dh)`` (:meth:`project`) and, with
        ``residual`` or post-norm, ``x[t]`` ``(..., dim)``, all broadcastable to one batch shape S. Returns the
        mean over tokens of the block's output, ``(*S, dim)`` (``pool=False``: every token's output,
        ``(*S, T, dim)``), and the weights ``(*S, H, T, T)``: the same as ``mix(stack(qkv), stack(x), pool=pool)``
        on the tokens broadcast to S, without building that stack, so a token shared along a batch axis (one
        user against every pair, one query against its candidates) stays one row. Only the T×T scores and the
        value sums are formed at the batch shape."""
        t = len(qkv)
        if (self.residual or self.norm_place == "post") and (x is None or len(x) != t):
            raise ConfigError("SelfAttentionBlock.mix_tokens: residual / post-norm needs the input tokens x")
        q = [a[..., 0, :, :] for a in qkv]
        k = [a[..., 1, :, :] for a in qkv]
        v = [a[..., 2, :, :] for a in qkv]
        scale = 1.0 / math.sqrt(self.head_dim)
        pairs = torch.broadcast_tensors(*[(qa * kb).sum(-1) for qa in q for kb in k])  # T² × (*S, H)
        scores = torch.stack(pairs, dim=-1).unflatten(-1, (t, t)) * scale  # (*S, H, Tq, Tk)
        weights = torch.softmax(scores, dim=-1)
        dropped = self.dropout(weights)

        def values(w: torch.Tensor) -> torch.Tensor:  # Σ_t w[..., t] v_t: (*S, H, Tk) -> (*S, dim)
            total = w[..., 0, None] * v[0]
            for j in range(1, t):
                total = total + w[..., j, None] * v[j]
            return total.flatten(-2)

        if pool and not self.residual and self.norm_place != "post":
            return self.out(values(dropped.mean(-2))), weights
        outs = []
        for a in range(t):  # each query token's output
            out = self.out(values(dropped[..., a, :]))
            if self.residual:
                assert x is not None
                out = x[a] + out
            if self.norm_place == "post":
                out = self.norm(out)
            outs.append(out)
        if pool:  # a running sum: no (T, *S, dim) stack
            total = outs[0]
            for out in outs[1:]:
                total = total + out
            return total / t, weights
        return torch.stack(torch.broadcast_tensors(*outs), dim=-2), weights


def attention_shares(weights: torch.Tensor) -> torch.Tensor:
    """Share of the attention each key token receives: ``(B, H, T, T)`` or ``(B, T, T)`` -> ``(B, T)``.

    share_t = mean over heads h and query tokens q of ``weights[h, q, t]``. Every row of ``weights`` sums to 1,
    so the shares of one example sum to 1. With mean pooling over tokens and no residual, the pooled output of
    head h is exactly ``Σ_t share_{h,t} · V_{h,t}`` (before W^O), which is why this is the share we report.
    """
    if weights.dim() == 4:
        weights = weights.mean(1)
    return weights.mean(-2)

"""Blocks of the sequential models: masked multi-head attention, the SASRec transformer block and encoder, the
gated cross-attention (GCA) module, and the tensor form of per-domain views aligned in time.

Every sequence here is a ``(B, W)`` int64 tensor of item index + 1, padded on the LEFT with 0 (the layout of
:class:`attnrec.data.sequences.Sequences`), most recent item in the last column. Column order is time order
within a row, so "earlier" is "a smaller column of the mixed sequence".
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from attnrec.errors import ConfigError

NormPlace = Literal["pre", "post"]
Activation = Literal["relu", "gelu"]
InitScheme = Literal["scaled", "normal"]
GateAct = Literal["sigmoid", "tanh"]
GateForm = Literal["scalar", "vector", "ffn"]
#: the N(0, std) of ``init="normal"`` (BERT's and RecBole's ``initializer_range``)
INIT_STD = 0.02


class Dropout(nn.Module):
    """Inverted dropout, ``x · 1[u >= p] / (1 - p)`` with ``u ~ U(0, 1)`` from the global generator in training,
    the identity in eval. Same distribution as ``nn.Dropout``; on CPU a uniform draw and a compare take about
    two thirds of the time of ``nn.Dropout``'s Bernoulli sampling, which dominated an epoch's profile."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep * (1.0 / (1.0 - self.p))


def causal_mask(real: torch.Tensor) -> torch.Tensor:
    """Self-attention visibility ``(B, 1, W, W)`` bool for left-padded rows with ``real`` ``(B, W)`` True at
    items: query ``i`` sees key ``j`` iff ``j <= i`` and ``j`` is an item. The diagonal is always visible, so a
    padded query attends to itself (its output is zeroed afterwards) and no softmax row is empty."""
    w = real.shape[1]
    tri = torch.ones(w, w, dtype=torch.bool, device=real.device).tril()
    eye = torch.eye(w, dtype=torch.bool, device=real.device)
    return ((tri[None] & real[:, None, :]) | eye[None])[:, None]


def cross_mask(q_cols: torch.Tensor, k_cols: torch.Tensor) -> torch.Tensor:
    """Cross-attention visibility ``(B, 1, Wq, Wk)`` bool: query at mixed column ``q_cols[b, i]`` sees key
    at mixed column ``k_cols[b, j]`` iff the key is an item (column >= 0) that happened strictly earlier
    (``k_cols < q_cols``). Padding has column -1, so a padded query sees nothing."""
    return ((k_cols[:, None, :] >= 0) & (k_cols[:, None, :] < q_cols[:, :, None]))[:, None]


class MaskedAttention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017) with a visibility mask:
    ``softmax(Q Kᵀ / √d_h + mask) V`` per head, heads concatenated and projected by ``W^O``.

    A query row whose mask hides every key gets the zero vector (not the mean of hidden values): masked
    scores are set to the dtype's minimum, so a row with any visible key puts exactly 0 weight on hidden ones,
    and rows with none are zeroed at the output. Dropout applies to the attention weights.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"attention dim {dim} must be divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """``query`` (B, Wq, d), ``key`` (= value input) (B, Wk, d), ``visible`` (B, 1, Wq, Wk) bool ->
        (B, Wq, d)."""
        b, wq, d = query.shape
        wk = key.shape[1]
        q = self.q(query).view(b, wq, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(key).view(b, wk, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(key).view(b, wk, self.heads, self.head_dim).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        mixed = (self.dropout(weights) @ v).transpose(1, 2).reshape(b, wq, d)
        # a row with no visible key mixed hidden values: zero it after W^O (its bias included)
        return self.out(mixed) * visible[:, 0].any(-1, keepdim=True)


class FeedForward(nn.Module):
    """Position-wise ``W2 Dropout(act(W1 x + b1)) + b2`` (SASRec's point-wise feed-forward): ``act`` ReLU (SASRec)
    or GELU (BERT, RecBole; the exact erf form); ``inner_dropout=False`` drops the dropout between the layers
    (BERT and RecBole have none there)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        dropout: float,
        activation: Activation = "relu",
        inner_dropout: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ConfigError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.inner = nn.Linear(dim, hidden)
        self.outer = nn.Linear(hidden, dim)
        self.dropout: nn.Module = Dropout(dropout) if inner_dropout else nn.Identity()
        self.act = F.relu if activation == "relu" else F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.dropout(self.act(self.inner(x))))


class TransformerBlock(nn.Module):
    """One causal self-attention block. ``norm="pre"`` (SASRec):
    ``x ← x + Drop(MHA(LN(x))); x ← x + Drop(FFN(LN(x)))``; ``"post"`` (the original Transformer):
    ``x ← LN(x + Drop(MHA(x))); x ← LN(x + Drop(FFN(x)))``. Padded positions are zeroed after the block."""

    def __init__(
        self,
        dim: int,
        heads: int,
        ffn_dim: int,
        dropout: float,
        norm: NormPlace,
        *,
        activation: Activation = "relu",
        ffn_inner_dropout: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.attn = MaskedAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout, activation, ffn_inner_dropout)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.dropout = Dropout(dropout)
        self.pre = norm == "pre"

    def forward(self, x: torch.Tensor, visible: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.pre:
            h = self.norm1(x)
            x = x + self.dropout(self.attn(h, h, visible))
            x = x + self.dropout(self.ffn(self.norm2(x)))
        else:
            x = self.norm1(x + self.dropout(self.attn(x, x, visible)))
            x = self.norm2(x + self.dropout(self.ffn(x)))
        return x * real[..., None]


class SequenceEncoder(nn.Module):
    """SASRec's encoder over item embeddings: learned absolute positions, ``n_blocks`` causal blocks, and (pre-norm)
    a final LayerNorm. The model drives the blocks one at a time (:meth:`embed`, ``blocks[k]``, :meth:`finish`) so
    that cross-attention can be inserted between them.

    Options towards BERT / RecBole's SASRec (defaults: SASRec's): ``embed_scale`` (multiply the item vectors by
    √d), ``embed_norm`` (a LayerNorm on ``e + p`` before the input dropout), ``activation`` and
    ``ffn_inner_dropout`` of the feed-forward, ``eps`` of every LayerNorm, and ``init``: ``"scaled"`` keeps
    torch's defaults (positions N(0, 1), Linear uniform ±1/√fan_in); ``"normal"`` draws every Linear and Embedding
    weight (the positions) from N(0, ``init_std``) with zero biases and LayerNorms at (1, 0), as BERT and RecBole.

    Positions count from the left: the oldest kept item is position 0, the k-th is k - 1, whatever the padding.
    (SASRec's code numbers the columns of the left-padded array, so an item's position tells how many items
    follow it; in a per-domain view that count depends on the domains of later items, which would let the
    future leak into earlier states. Ranks from the left depend on the past only.)"""

    def __init__(
        self,
        dim: int,
        heads: int,
        ffn_dim: int,
        n_blocks: int,
        dropout: float,
        norm: NormPlace,
        max_len: int,
        *,
        activation: Activation = "relu",
        ffn_inner_dropout: bool = True,
        embed_scale: bool = True,
        embed_norm: bool = False,
        eps: float = 1e-5,
        init: InitScheme = "scaled",
        init_std: float = INIT_STD,
    ) -> None:
        super().__init__()
        if init not in ("scaled", "normal"):
            raise ConfigError(f"init must be 'scaled' or 'normal', got {init!r}")
        self.dim, self.max_len = dim, max_len
        self.scale = math.sqrt(dim) if embed_scale else 1.0
        self.position = nn.Embedding(max_len, dim)
        self.embed_norm: nn.Module = nn.LayerNorm(dim, eps=eps) if embed_norm else nn.Identity()
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(
                    dim,
                    heads,
                    ffn_dim,
                    dropout,
                    norm,
                    activation=activation,
                    ffn_inner_dropout=ffn_inner_dropout,
                    eps=eps,
                )
                for _ in range(n_blocks)
            ]
        )
        self.final_norm: nn.Module = nn.LayerNorm(dim, eps=eps) if norm == "pre" else nn.Identity()
        self.dropout = Dropout(dropout)
        if init == "normal":
            normal_init(self, init_std)

    def embed(self, item_vectors: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``item_vectors`` (B, W, d) (already looked up) -> the first block's input ``√d·e + p`` (``e + p``
        without ``embed_scale``; LayerNorm-ed with ``embed_norm``), dropped out, zero at padding."""
        w = item_vectors.shape[1]
        if w > self.max_len:
            raise ConfigError(f"a sequence of width {w} exceeds max_len {self.max_len}")
        pos = (real.long().cumsum(1) - 1).clamp(min=0)
        x = self.embed_norm(item_vectors * self.scale + self.position(pos))
        return self.dropout(x) * real[..., None]

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_norm(x)

    def forward(self, item_vectors: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The whole encoder: (B, W, d) item vectors, (B, W) bool -> (B, W, d) states (position t has seen
        items <= t only)."""
        visible = causal_mask(real)
        x = self.embed(item_vectors, real)
        for block in self.blocks:
            x = block(x, visible, real)
        return self.finish(x)


def normal_init(module: nn.Module, std: float) -> None:
    """BERT's initialisation (RecBole's ``_init_weights``) of every submodule: Linear and Embedding weights
    N(0, ``std``), Linear biases 0, LayerNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class GatedCrossAttention(nn.Module):
    """``X ← X + g ⊙ X'`` with ``X' = MHA(LN(X), LN(Y), LN(Y))``: the stream ``X`` of one domain queries the
    other domain's states ``Y`` (keys and values), each query seeing only keys that happened strictly earlier
    (:func:`cross_mask`); a query that sees no key gets ``X' = 0``.

    The gate ``g`` is ``act(a)`` with ``act`` sigmoid or tanh and ``a``: a learned scalar (``"scalar"``), a
    learned vector of size d (``"vector"``), or ``FFN([X; X'])`` per position and channel (``"ffn"``, a two-layer
    ReLU network whose last layer starts at weight 0 and bias ``gate_init``, so every form starts at
    ``act(gate_init)``). ``layer_norm=False`` drops both LayerNorms (queries and keys/values enter raw); ``eps``
    is theirs (gca passes the backbone's ``layer_norm_eps``). The module's Linear layers keep torch's init.
    With tanh and ``a = 0`` the gate is closed and the module is the identity: the backbone exactly.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        dropout: float = 0.0,
        layer_norm: bool = True,
        gate_act: GateAct = "sigmoid",
        gate_form: GateForm = "scalar",
        gate_hidden: int | None = None,
        gate_init: float = 0.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if gate_act not in ("sigmoid", "tanh"):
            raise ConfigError(f"gate_act must be 'sigmoid' or 'tanh', got {gate_act!r}")
        if gate_form not in ("scalar", "vector", "ffn"):
            raise ConfigError(f"gate_form must be 'scalar', 'vector' or 'ffn', got {gate_form!r}")
        self.gate_act, self.gate_form = gate_act, gate_form
        self.norm_q: nn.Module = nn.LayerNorm(dim, eps=eps) if layer_norm else nn.Identity()
        self.norm_kv: nn.Module = nn.LayerNorm(dim, eps=eps) if layer_norm else nn.Identity()
        self.attn = MaskedAttention(dim, heads, dropout)
        self.gate_ffn: nn.Sequential | None = None
        if gate_form == "ffn":
            hidden = gate_hidden or dim
            last = nn.Linear(hidden, dim)
            nn.init.zeros_(last.weight)
            nn.init.constant_(last.bias, gate_init)
            self.gate_ffn = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), last)
        else:
            size = 1 if gate_form == "scalar" else dim
            self.gate_logit = nn.Parameter(torch.full((size,), float(gate_init)))

    def gate(self, x: torch.Tensor, x_prime: torch.Tensor) -> torch.Tensor:
        """``g``: broadcastable to ``x`` (B, W, d)."""
        if self.gate_ffn is not None:
            a = self.gate_ffn(torch.cat([x, x_prime], dim=-1))
        else:
            a = self.gate_logit
        return torch.sigmoid(a) if self.gate_act == "sigmoid" else torch.tanh(a)

    def cross(self, x: torch.Tensor, y: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """``X' = MHA(LN(X), LN(Y), LN(Y))`` (B, Wq, d); zero for a query with no visible key."""
        return self.attn(self.norm_q(x), self.norm_kv(y), visible)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, visible: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, Wq, d), ``y`` (B, Wk, d), ``visible`` (B, 1, Wq, Wk) -> (the updated ``x``, ``X'``)."""
        x_prime = self.cross(x, y, visible)
        return x + self.gate(x, x_prime) * x_prime, x_prime


def domain_view(
    items: torch.Tensor, domains: torch.Tensor, domain: int, *, trim: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The items of one domain of left-padded mixed sequences, left-padded again (as
    :meth:`attnrec.data.sequences.Sequences.view`), trimmed to the batch's longest view (at least 1 column) when
    ``trim``, else as wide as the mixed sequence (a row's result then does not depend on the other rows).

    ``items``, ``domains`` (B, L) -> ``(view_items (B, W), view_cols (B, W))``: ``view_cols`` is each kept item's
    column in the mixed sequence (-1 at padding), its time for cross-attention masks."""
    keep = domains == domain
    # a stable sort on the keep flag moves the domain's items to the right, in their order
    perm = torch.argsort(keep.to(torch.int8), dim=1, stable=True)
    kept = keep.gather(1, perm)
    width = max(int(kept.sum(1).max()) if kept.numel() else 0, 1) if trim else keep.shape[1]
    perm, kept = perm[:, -width:], kept[:, -width:]
    view_items = torch.where(kept, items.gather(1, perm), torch.zeros_like(perm))
    view_cols = torch.where(kept, perm, torch.full_like(perm, -1))
    return view_items, view_cols


def align_to_mixed(view_states: torch.Tensor, domains: torch.Tensor, domain: int) -> torch.Tensor:
    """For every mixed position t, the state of ``domain``'s view at its latest item at or before t.

    ``view_states`` (B, W, d) of :func:`domain_view`'s left-padded view, ``domains`` (B, L) of the mixed
    sequence -> (B, L, d); zero where the domain has no item yet."""
    count = (domains == domain).long().cumsum(1)  # items of the domain at columns <= t
    total = count[:, -1:]
    width = view_states.shape[1]
    index = (width - total + count - 1).clamp(min=0)
    gathered = view_states.gather(1, index[..., None].expand(-1, -1, view_states.shape[2]))
    return gathered * (count > 0)[..., None]

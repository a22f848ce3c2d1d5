"""Feature-interaction blocks shared by the CTR models. Every block takes field embeddings ``E`` of shape
(B, F, d) (``F`` fields, ``d`` embedding dimensions) unless it says otherwise.

* :func:`fm_second_order` — FM (Rendle 2010): ``sum_{i<j} <v_i, v_j> = 0.5 * sum_k ((sum_i v_ik)^2 - sum_i v_ik^2)``
* :func:`bi_interaction` — NFM (He & Chua 2017): the same before the sum over ``k``, a (B, d) vector
* :func:`pairwise_products` and :class:`AttentionalPairPooling` — AFM (Xiao et al. 2017)
* :class:`CIN` — xDeepFM's compressed interaction network (Lian et al. 2018)
* :class:`CrossNetV2` — DCN-v2 cross layers ``x_{l+1} = x_0 * (W x_l + b) + x_l`` (Wang et al. 2021)
* :class:`InteractingLayer` — AutoInt's multi-head self-attention over fields (Song et al. 2019)
* :class:`MLP` — the deep part of DeepFM/xDeepFM/DCN/NFM
"""

from __future__ import annotations

from typing import Literal, cast

import torch
from torch import nn

Activation = Literal["relu", "tanh", "sigmoid", "identity"]


def activation(name: Activation) -> nn.Module:
    """The activation module for ``name``."""
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}[name]()


def bi_interaction(emb: torch.Tensor) -> torch.Tensor:
    """NFM's bi-interaction pooling ``sum_{i<j} v_i * v_j`` (element-wise), (B, F, d) -> (B, d), in O(F d)."""
    s = emb.sum(1)
    return 0.5 * (s * s - (emb * emb).sum(1))


def fm_second_order(emb: torch.Tensor) -> torch.Tensor:
    """FM's pairwise term ``sum_{i<j} <v_i, v_j>``, (B, F, d) -> (B,)."""
    return bi_interaction(emb).sum(-1)


def pair_indices(n_fields: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of the ``F (F - 1) / 2`` pairs ``i < j``, in row-major order."""
    idx = torch.triu_indices(n_fields, n_fields, offset=1, device=device)
    return idx[0], idx[1]


def pairwise_products(emb: torch.Tensor) -> torch.Tensor:
    """Element-wise products of every field pair ``i < j``: (B, F, d) -> (B, F (F - 1) / 2, d)."""
    rows, cols = pair_indices(emb.shape[1], emb.device)
    return emb[:, rows] * emb[:, cols]


class AttentionalPairPooling(nn.Module):
    """AFM's attention over pair products: ``a_ij = softmax_ij(h^T ReLU(W (v_i * v_j) + b))`` and
    ``pooled = sum_ij a_ij (v_i * v_j)``.

    ``forward`` returns ``(pooled (B, d), weights (B, P))`` with ``P = F (F - 1) / 2`` pairs in the order of
    :func:`pair_indices`; the weights of each row sum to 1.
    """

    def __init__(self, dim: int, attention_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, attention_dim)
        self.h = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = pairwise_products(emb)  # (B, P, d)
        weights = torch.softmax(self.h(torch.relu(self.proj(pairs))).squeeze(-1), dim=1)
        return (weights.unsqueeze(-1) * pairs).sum(1), weights


class CIN(nn.Module):
    """Compressed interaction network: ``X^k_{h,:} = act(sum_{i,j} W^{k,h}_{ij} (X^{k-1}_{i,:} * X^0_{j,:}))``.

    ``layer_sizes`` are the feature-map counts ``H_k``. With ``split_half`` (the paper's default) every layer but
    the last keeps half its maps for the next layer and sends the other half to the output. ``forward`` takes
    (B, F, d) and returns the sum over ``d`` of every layer's output maps, (B, :attr:`output_dim`).
    """

    def __init__(
        self,
        n_fields: int,
        layer_sizes: list[int],
        *,
        split_half: bool = True,
        act: Activation = "identity",
    ) -> None:
        super().__init__()
        self.split_half = split_half
        self.convs = nn.ModuleList()
        self.act = activation(act)
        prev, out_dim = n_fields, 0
        for k, size in enumerate(layer_sizes):
            last = k == len(layer_sizes) - 1
            if split_half and not last and size % 2:
                raise ValueError(f"CIN layer size {size} must be even with split_half")
            # a 1x1 convolution over the (H_{k-1} * F) channel axis is the weighted sum over (i, j)
            self.convs.append(nn.Conv1d(prev * n_fields, size, kernel_size=1))
            keep = size // 2 if split_half and not last else size
            out_dim += size - keep if split_half and not last else size
            prev = keep
        self.output_dim = out_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        b, f, d = x0.shape
        # Two ways to the same sum, chosen per layer by which intermediate is smaller: the 1x1 convolution over the
        # (B, H_{k-1} F, d) outer product (CIN's definition), or T[b, d, h, i] = sum_j W[h, i, j] x0[b, j, d] (one
        # GEMM over B*d rows, a (B, d, H_k, H_{k-1}) tensor) then sum_i T * x_{k-1}. With many fields (F > H_k,
        # e.g. Criteo, F=39) the second is ~3x faster forward + backward on CPU; with few, the convolution is.
        x0t = x0.transpose(1, 2).reshape(b * d, f)  # (B d, F)
        xk, outs = x0, []
        for k, module in enumerate(self.convs):
            conv = cast(nn.Conv1d, module)
            size, prev = conv.out_channels, xk.shape[1]
            if f > size:
                w = (
                    conv.weight.view(size, prev, f).permute(2, 0, 1).reshape(f, size * prev)
                )  # (F, H_k H_{k-1})
                t = (x0t @ w).view(b, d, size, prev)
                bias = cast(torch.Tensor, conv.bias)
                h = ((t * xk.transpose(1, 2).unsqueeze(2)).sum(-1) + bias).transpose(1, 2)
            else:
                h = conv(torch.einsum("bhd,bmd->bhmd", xk, x0).reshape(b, -1, d))
            h = self.act(h)  # (B, H_k, d)
            if self.split_half and k < len(self.convs) - 1:
                xk, out = torch.split(h, h.shape[1] // 2, dim=1)
            else:
                xk, out = h, h
            outs.append(out)
        return torch.cat(outs, dim=1).sum(-1)


class CrossNetV2(nn.Module):
    """DCN-v2 cross network on flat inputs (B, D): ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l``, ``n_layers`` times."""

    def __init__(self, dim: int, n_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class InteractingLayer(nn.Module):
    """Multi-head self-attention over fields (AutoInt's interacting layer), (B, F, d_in) -> (B, F, heads * head_dim).

    Per head ``h``: ``alpha = softmax_j(<W_Q e_i, W_K e_j> / s)`` and ``out_i = sum_j alpha_ij W_V e_j``, with
    ``s = sqrt(head_dim)`` when ``scaled`` else 1 (AutoInt uses the plain inner product). The heads are
    concatenated; with ``residual`` ``W_res e_i`` is added; then ReLU (AutoInt eq. 8). ``forward`` returns the
    output and the attention weights (B, heads, F, F).
    """

    def __init__(
        self,
        in_dim: int,
        head_dim: int,
        n_heads: int,
        *,
        residual: bool = True,
        scaled: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.scaled, self.relu = n_heads, head_dim, scaled, relu
        out = head_dim * n_heads
        self.query = nn.Linear(in_dim, out, bias=False)
        self.key = nn.Linear(in_dim, out, bias=False)
        self.value = nn.Linear(in_dim, out, bias=False)
        self.res = nn.Linear(in_dim, out, bias=False) if residual else None
        self.output_dim = out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, weights = self.attend(x)
        if self.res is not None:
            out = out + self.res(x)
        return (torch.relu(out) if self.relu else out), weights

    def attend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention read-out ``sum_j alpha_ij W_V e_j`` (B, F, heads * head_dim), heads concatenated, before the
        residual and ReLU, and the weights (B, heads, F, F). A method of its own so that
        :func:`~attnrec.models.layers.diagnostics.attention_orthogonality` reads it without recomputing it."""
        b, f, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, f, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, F, d')

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = q @ k.transpose(-1, -2)
        if self.scaled:
            scores = scores / self.head_dim**0.5
        weights = torch.softmax(scores, dim=-1)
        return (weights @ v).transpose(1, 2).reshape(b, f, -1), weights


class MLP(nn.Module):
    """Fully connected layers ``hidden`` (each Linear -> [BatchNorm] -> act -> Dropout), then an optional
    ``out_dim`` Linear. (B, in_dim) -> (B, out_dim or hidden[-1] or in_dim)."""

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        *,
        dropout: float = 0.0,
        act: Activation = "relu",
        batch_norm: bool = False,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for size in hidden:
            layers.append(nn.Linear(prev, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(activation(act))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = size
        if out_dim is not None:
            layers.append(nn.Linear(prev, out_dim))
            prev = out_dim
        self.net = nn.Sequential(*layers)
        self.output_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

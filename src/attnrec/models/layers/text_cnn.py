"""The CNN text processor of the review models (DeepCoNN, TransNet, safmr; Kim 2014's sentence CNN).

tokens (B, T) -> word embeddings (B, T, d) -> Conv1d with ``n_kernels`` kernels of width ``kernel_size`` over
time ("valid": T - v + 1 positions, safmr eq. 1) -> ReLU -> max over time (eqs. 2-3) -> dropout -> linear to
``out_dim`` (eq. 4), optionally followed by an activation. :meth:`TextCNN.feature_map` returns the pooled
per-kernel features before the linear layer.

A document of R reviews of L words is convolved as one sequence of R·L tokens (DeepCoNN concatenates a user's
reviews); a window may straddle the padding between two reviews. Index 0 is padding: its embedding row is zero
and gets no gradient.

How it is computed (the math is eq. 1-3 exactly; only the order of operations differs from ``nn.Conv1d``): the
convolution is linear in the word vectors, so kernel row ``j`` applied to word ``w`` is a table
``P_j = E W_jᵀ`` over the batch's distinct words (U, n_kernels), and a window's pre-activation is
``b + Σ_j P_j[token_{t+j}]`` — gathers instead of a (T·v·d)-sized matmul per position. :class:`_MaxPooledWindows`
keeps only the arg-max position per kernel, so the backward pass touches B·n_kernels·v table entries instead of
the whole (B, T, n_kernels) activation: on one CPU thread this is several times faster than conv + ReLU + max.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from attnrec.errors import ConfigError

Activation = Literal["none", "relu", "tanh"]


#: pre-activations computed at once in the forward pass (floats): bounds the memory of long documents
_CHUNK_FLOATS = 1 << 22


class _MaxPooledWindows(torch.autograd.Function):
    """relu(max_t (b + Σ_j P_j[tokens[:, t + j]])) over the T - v + 1 windows: (B, n_kernels).

    ``tables`` (v, U, K) are the per-kernel-row word tables, ``bias`` (K,), ``inv`` (B, T) int64 rows of the
    tables, ``real`` (B, T) bool: the token is a word (not padding). A window of padding only has the
    pre-activation ``b`` exactly (padding's vector is zero), so only windows holding a word are computed — packed
    to the left, rows sorted by their count so a chunk is as wide as its longest row — and ``b`` is a candidate
    of the max for rows with a padding window. The backward pass sends each kernel's gradient to the words of its
    arg-max window only (the gradient of a max), and only where the maximum is positive (the ReLU)."""

    @staticmethod
    def forward(
        ctx: Any, tables: torch.Tensor, bias: torch.Tensor, inv: torch.Tensor, real: torch.Tensor
    ) -> torch.Tensor:
        v, u, k = tables.shape
        b, t = inv.shape
        windows = t - v + 1
        has_word = real[:, :windows].clone()
        for j in range(1, v):
            has_word |= real[:, j : j + windows]
        counts = has_word.sum(1)
        # window starts of each row, those holding a word first (in order); rows sorted by how many they have
        starts = torch.sort((~has_word).to(torch.int8), dim=1, stable=True).indices
        order = torch.argsort(counts)
        # row u of each table is -inf: the slots past a row's count can never be its max
        ext = torch.cat([tables, tables.new_full((v, 1, k), float("-inf"))], 1)
        ext[0, :u] += bias
        best = tables.new_full((b, k), float("-inf"))
        where = torch.full((b, k), -1, dtype=torch.int64, device=tables.device)
        rows = max(1, _CHUNK_FLOATS // max(1, windows * k))
        for s in range(0, b, rows):
            r = order[s : s + rows]
            width = int(counts[r].max())
            if width == 0:
                continue
            st = starts[r, :width]
            beyond = torch.arange(width, device=st.device) >= counts[r, None]
            part = inv[r]
            acc = nn.functional.embedding(torch.gather(part, 1, st).masked_fill_(beyond, u), ext[0])
            for j in range(1, v):
                acc += nn.functional.embedding(torch.gather(part, 1, st + j).masked_fill_(beyond, u), ext[j])
            m, arg = acc.max(dim=1)
            best[r], where[r] = m, torch.gather(st, 1, arg)
        take = (counts < windows)[:, None] & (bias > best)  # a padding window (value b) is the max
        best = torch.where(take, bias.expand_as(best), best)
        where = where.masked_fill(take, -1)
        ctx.save_for_backward(inv, where, best)
        ctx.table_shape = tables.shape
        return best.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        inv, where, best = ctx.saved_tensors
        v, u, k = ctx.table_shape
        g = grad * (best > 0)
        words_max = where >= 0  # a padding window's max reaches the bias only
        kernels = torch.arange(k, device=g.device).expand_as(where)[words_max]
        at = where.clamp_min(0)
        grad_tables = torch.zeros((v, u * k), dtype=g.dtype, device=g.device)
        for j in range(v):
            words = torch.gather(inv, 1, at + j)[words_max]  # the word at row j of each arg-max window
            grad_tables[j].index_add_(0, words * k + kernels, g[words_max])
        return grad_tables.view(v, u, k), g.sum(0), None, None


class TextCNN(nn.Module):
    """Token indices (B, T) -> text vectors (B, out_dim).

    ``word_vectors`` (vocab_size, word_dim) initialises the embedding (e.g. skip-gram vectors; row 0 is zeroed);
    None draws N(0, 1). ``freeze_words`` keeps the embedding fixed.
    """

    def __init__(
        self,
        vocab_size: int,
        word_dim: int,
        n_kernels: int = 100,
        kernel_size: int = 3,
        out_dim: int = 50,
        dropout: float = 0.5,
        word_vectors: np.ndarray | torch.Tensor | None = None,
        *,
        out_activation: Activation = "none",
        freeze_words: bool = False,
    ) -> None:
        super().__init__()
        if vocab_size < 2 or word_dim < 1 or n_kernels < 1 or kernel_size < 1 or out_dim < 1:
            raise ConfigError(
                "TextCNN: vocab_size >= 2 and word_dim, n_kernels, kernel_size, out_dim >= 1 expected, got "
                f"{vocab_size}, {word_dim}, {n_kernels}, {kernel_size}, {out_dim}"
            )
        self.kernel_size = kernel_size
        self.embedding = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        if word_vectors is not None:
            w = torch.as_tensor(np.asarray(word_vectors), dtype=torch.float32)
            if tuple(w.shape) != (vocab_size, word_dim):
                raise ConfigError(
                    f"TextCNN: word_vectors has shape {tuple(w.shape)}, expected ({vocab_size}, {word_dim})"
                )
            with torch.no_grad():
                self.embedding.weight.copy_(w)
                self.embedding.weight[0].zero_()
        self.embedding.weight.requires_grad_(not freeze_words)
        self.conv = nn.Conv1d(word_dim, n_kernels, kernel_size)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(n_kernels, out_dim)
        self.out_activation = out_activation

    def feature_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """Max-pooled ReLU convolution features (B, n_kernels) of tokens (B, T) (T is padded up to the kernel
        width when shorter)."""
        if tokens.dim() != 2:
            raise ConfigError(f"TextCNN: tokens must be (B, T), got shape {tuple(tokens.shape)}")
        if tokens.shape[1] < self.kernel_size:
            tokens = nn.functional.pad(tokens, (0, self.kernel_size - tokens.shape[1]))
        tokens = tokens.long()
        words, inv = torch.unique(tokens, return_inverse=True)
        w = self.conv.weight  # (K, d, v)
        k, d, v = w.shape
        # P_j = E W_jᵀ for every kernel row j at once: (U, d) @ (d, v K) -> (v, U, K)
        flat = self.embedding(words) @ w.permute(1, 2, 0).reshape(d, v * k)
        tables = flat.view(-1, v, k).transpose(0, 1).contiguous()
        out = _MaxPooledWindows.apply(tables, self.conv.bias, inv, tokens != 0)
        assert isinstance(out, torch.Tensor)
        return out

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text vectors (B, out_dim) of tokens (B, T)."""
        out = self.linear(self.dropout(self.feature_map(tokens)))
        if self.out_activation == "relu":
            return torch.relu(out)
        if self.out_activation == "tanh":
            return torch.tanh(out)
        return out

"""The CNN text processor of the review models (DeepCoNN, TransNet, safmr; Kim 2014's sentence CNN).

tokens (B, T) -> word embeddings (B, T, d) -> Conv1d with ``n_kernels`` kernels of width ``kernel_size`` over
time ("valid": T - v + 1 positions, safmr eq. 1) -> ReLU -> max over time (eqs. 2-3) -> dropout -> linear to
``out_dim`` (eq. 4), optionally followed by an activation. :meth:`TextCNN.feature_map` returns the pooled
per-kernel features before the linear layer.

A document of R reviews of L words is convolved as one sequence of R·L tokens (DeepCoNN concatenates a user's
reviews); a window may straddle the padding between two reviews. Index 0 is padding: its embedding row is zero
and gets no gradient.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from attnrec.errors import ConfigError

Activation = Literal["none", "relu", "tanh"]


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
        emb = self.embedding(tokens.long()).transpose(1, 2)  # (B, d, T): Conv1d wants channels first
        return torch.relu(self.conv(emb)).amax(dim=2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text vectors (B, out_dim) of tokens (B, T)."""
        out = self.linear(self.dropout(self.feature_map(tokens)))
        if self.out_activation == "relu":
            return torch.relu(out)
        if self.out_activation == "tanh":
            return torch.tanh(out)
        return out

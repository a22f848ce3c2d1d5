"""Biased matrix factorisation, the model Surprise calls SVD (Koren, Bell & Volinsky 2009).

    r̂_ui = μ + b_u + b_i + q_iᵀ p_u

Two vectorised solvers fit the same parameters (so bundles and hybrid_csa do not care which one ran):

* ``als`` (default): alternating ridge least squares with the biases folded in as an extra column — every user's
  (k+1)×(k+1) normal equations are built at once with one sparse × dense product and solved with one batched
  Cholesky solve; then the same for items. Weighted-λ regularisation (λ·n_u, Zhou et al. 2008).
* ``sgd``: the Surprise objective Σ(r − r̂)² + λ(b_u² + b_i² + ‖p_u‖² + ‖q_i‖²) minimised by mini-batch gradient
  descent in the one Trainer.

See ``docs/models/svd.md`` for the equations mapped to this code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn

from attnrec.data.batches import RatingBatch, rating_batches
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError
from attnrec.models.base import FitReport, ModelConfig, TaskKind, TorchRecommender, TrainableModule, register


class SVDConfig(ModelConfig):
    """Defaults chosen on the ML-100k *validation* split (BENCHMARKS.md): 32 factors and 6 ALS sweeps sit on the
    plateau of validation RMSE; hybrid_csa asks for 50 factors explicitly."""

    factors: int = Field(32, ge=1)
    solver: Literal["als", "sgd"] = "als"
    #: ALS: ridge weight per observed rating (weighted-λ); SGD: the weight of the L2 term (Surprise's reg_all)
    reg: float = Field(0.1, ge=0)
    reg_bias: float = Field(0.02, ge=0)
    #: ALS sweeps (each solves users then items); the SGD solver's epochs come from the Trainer config
    iterations: int = Field(6, ge=1)
    init_std: float = Field(0.1, gt=0)
    clip: bool = True


class BiasedMF(TrainableModule):
    """Parameters μ, b_u, b_i, P, Q and the prediction/loss of the biased MF model."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        factors: int,
        init_std: float,
        reg: float,
        reg_bias: float,
        mu: float = 0.0,
    ) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.randn(n_users, factors) * init_std)
        self.q = nn.Parameter(torch.randn(n_items, factors) * init_std)
        self.bu = nn.Parameter(torch.zeros(n_users))
        self.bi = nn.Parameter(torch.zeros(n_items))
        self.mu: torch.Tensor
        self.register_buffer("mu", torch.tensor(float(mu)))
        self.reg, self.reg_bias = reg, reg_bias

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.mu + self.bu[users] + self.bi[items] + (self.p[users] * self.q[items]).sum(-1)

    def loss(self, batch: RatingBatch) -> torch.Tensor:
        u, i = batch.users, batch.items
        err = batch.ratings - self(u, i)
        penalty = self.reg * (self.p[u].square().sum(-1) + self.q[i].square().sum(-1)) + self.reg_bias * (
            self.bu[u].square() + self.bi[i].square()
        )
        return (err.square() + penalty).mean()


class _Rows:
    """The sparse rows of one ALS side laid out for batched BLAS: rows sorted by length and cut into chunks,
    each chunk's column indices and targets padded to the chunk's longest row (sorting keeps padding small)."""

    def __init__(self, r: sp.csr_matrix, chunk: int = 128) -> None:
        self.n_rows, self.n_cols = r.shape
        counts = np.diff(r.indptr)
        self.counts = torch.from_numpy(counts.astype(np.float32))
        order = np.argsort(counts, kind="stable")
        self.chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for start in range(0, self.n_rows, chunk):
            rows = order[start : start + chunk]
            lens = counts[rows]
            width = max(int(lens.max()), 1)
            # padded positions point at column n_cols, a zero row appended to the fixed factors
            cols = np.full((len(rows), width), self.n_cols, dtype=np.int64)
            vals = np.zeros((len(rows), width), dtype=np.float32)
            mask = np.arange(width)[None, :] < lens[:, None]
            # positions of these rows' entries in r.data, in row order, without a loop over rows
            starts = np.repeat(r.indptr[rows] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
            flat = starts + np.arange(int(lens.sum()))
            cols[mask] = r.indices[flat]
            vals[mask] = r.data[flat]
            self.chunks.append(
                (torch.from_numpy(rows.astype(np.int64)), torch.from_numpy(cols), torch.from_numpy(vals))
            )


def _ridge_side(
    rows: _Rows, fixed: torch.Tensor, fixed_bias: torch.Tensor, reg: float, reg_bias: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve one ALS half-step for every row at once.

    For row u with observed columns I(u) and residual targets y_ui = r_ui − μ − b_i, minimise
    Σ_i (y_ui − b_u − q_iᵀp_u)² + λ n_u ‖p_u‖² + λ_b n_u b_u²  over x_u = [p_u, b_u], with q̃_i = [q_i, 1]:
        (Q̃_uᵀ Q̃_u + n_u Λ) x_u = Q̃_uᵀ y_u,   Λ = diag(λ, …, λ, λ_b).
    Q̃_uᵀ Q̃_u for a chunk of rows is one batched matmul over the padded (rows, width, k+1) gather.
    """
    k = fixed.shape[1]
    qt = torch.cat([fixed, torch.ones(fixed.shape[0], 1)], dim=1)
    qt = torch.cat([qt, torch.zeros(1, k + 1)])  # the padding row
    bias = torch.cat([fixed_bias, torch.zeros(1)])
    gram = torch.empty(rows.n_rows, k + 1, k + 1)
    rhs = torch.empty(rows.n_rows, k + 1)
    for idx, cols, vals in rows.chunks:
        g = qt[cols]  # (B, W, k+1)
        y = torch.where(cols < rows.n_cols, vals - bias[cols], 0.0)
        gram[idx] = g.transpose(1, 2) @ g
        rhs[idx] = (g * y.unsqueeze(-1)).sum(1)
    lam = torch.full((k + 1,), reg)
    lam[k] = reg_bias
    gram += torch.diag_embed(rows.counts.clamp(min=1.0)[:, None] * lam)
    x = torch.cholesky_solve(rhs.unsqueeze(-1), torch.linalg.cholesky(gram)).squeeze(-1)
    return x[:, :k], x[:, k]


@register
class SVD(TorchRecommender):
    """Biased MF (Surprise's SVD) with a vectorised ALS solver and an SGD solver on the one Trainer."""

    name = "svd"
    task = TaskKind.RATING
    config_class = SVDConfig
    paper = "Koren, Bell & Volinsky 2009 (Surprise SVD)"
    config: SVDConfig

    rating_range: tuple[float, float] = (-np.inf, np.inf)

    # ------------------------------------------------------------------ fitting
    def build_module(self, train: Interactions) -> BiasedMF:
        c = self.config
        return BiasedMF(
            train.n_users,
            train.n_items,
            c.factors,
            c.init_std,
            c.reg,
            c.reg_bias,
            float(train.ratings.mean()),
        )

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> BiasedMF:
        c = self.config
        return BiasedMF(self.n_users, self.n_items, c.factors, c.init_std, c.reg, c.reg_bias)

    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[RatingBatch]:
        return rating_batches(train, batch_size, generator=generator)

    def _fit(self, train: Interactions, valid: Interactions | None, **kw: Any) -> FitReport:
        ratings = train.ratings
        self.rating_range = (float(ratings.min()), float(ratings.max()))
        if self.config.solver == "sgd":
            report = super()._fit(train, valid, **kw)
        else:
            unknown = sorted(k for k in kw if k != "trainer")
            if unknown:
                raise ConfigError(f"unknown fit() argument(s): {unknown}")
            report = self._fit_als(train, valid)
        self.mf.eval()
        return report

    def _fit_als(self, train: Interactions, valid: Interactions | None) -> FitReport:
        c = self.config
        t0 = time.perf_counter()
        torch.manual_seed(c.seed)
        module = self.build_module(train)
        self.module = module
        mu = float(module.mu)
        r_ui = sp.csr_matrix(
            (train.ratings - np.float32(mu), (train.users, train.items)), shape=(train.n_users, train.n_items)
        )
        by_user, by_item = _Rows(r_ui), _Rows(r_ui.T.tocsr())
        t_users, t_items = torch.tensor(train.users), torch.tensor(train.items)
        t_ratings = torch.tensor(train.ratings)
        q = module.q.detach().clone()
        bi = torch.zeros(train.n_items)
        history: list[dict[str, float]] = []
        best: tuple[float, int, dict[str, torch.Tensor]] | None = None
        for it in range(1, c.iterations + 1):
            p, bu = _ridge_side(by_user, q, bi, c.reg, c.reg_bias)
            q, bi = _ridge_side(by_item, p, bu, c.reg, c.reg_bias)
            self._set(p, q, bu, bi)
            with torch.no_grad():
                # the training objective (mean squared error plus the weighted-λ penalty per rating)
                err = module(t_users, t_items) - t_ratings
                penalty = c.reg * (p.square().sum(1)[t_users] + q.square().sum(1)[t_items])
                penalty += c.reg_bias * (bu.square()[t_users] + bi.square()[t_items])
                loss = float((err.square() + penalty).mean())
            row: dict[str, float] = {"epoch": it, "loss": loss}
            if valid is not None and len(valid):
                metrics = self.evaluate(valid)
                row.update({f"valid_{k}": v for k, v in metrics.items()})
                if best is None or metrics["rmse"] < best[0]:
                    best = (metrics["rmse"], it, {k: v.clone() for k, v in module.state_dict().items()})
            history.append(row)
        if best is not None:
            module.load_state_dict(best[2])
        return FitReport(
            seconds=time.perf_counter() - t0,
            epochs_run=c.iterations,
            best_epoch=best[1] if best else c.iterations,
            best_valid={"rmse": best[0]} if best else {},
            history=history,
        )

    def _set(self, p: torch.Tensor, q: torch.Tensor, bu: torch.Tensor, bi: torch.Tensor) -> None:
        m = self.mf
        with torch.no_grad():
            m.p.copy_(p)
            m.q.copy_(q)
            m.bu.copy_(bu)
            m.bi.copy_(bi)

    @property
    def mf(self) -> BiasedMF:
        """The fitted parameter module (typed)."""
        if not isinstance(self.module, BiasedMF):
            raise ConfigError("svd is not fitted: call fit() or load a bundle first")
        return self.module

    # ------------------------------------------------------------------ scoring
    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(*self.rating_range) if self.config.clip else x

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        u = torch.tensor(users, dtype=torch.int64, device=self.device)
        i = torch.tensor(items, dtype=torch.int64, device=self.device)
        with torch.no_grad():
            out = self.mf(u, i)
        return self._clip(out).cpu().numpy()

    def score_users(self, users: np.ndarray) -> torch.Tensor:
        m = self.mf
        u = torch.tensor(users, dtype=torch.int64, device=self.device)
        with torch.no_grad():
            scores = m.mu + m.bu[u, None] + m.bi[None, :] + m.p[u] @ m.q.T
        return self._clip(scores)

    @property
    def user_factors(self) -> np.ndarray:
        """P: (n_users, factors), the user latent vectors (used by hybrid_csa)."""
        return self.mf.p.detach().cpu().numpy()

    @property
    def item_factors(self) -> np.ndarray:
        """Q: (n_items, factors), the item latent vectors."""
        return self.mf.q.detach().cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = super().state_tensors()
        out["_rating_range"] = torch.tensor(self.rating_range, dtype=torch.float64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        tensors = dict(tensors)
        lo, hi = tensors.pop("_rating_range").tolist()
        self.rating_range = (lo, hi)
        super().load_state_tensors(tensors)

"""Biased matrix factorisation, the model Surprise calls SVD (Koren, Bell & Volinsky 2009).

    r̂_ui = μ + b_u + b_i + q_iᵀ p_u

Two vectorised solvers fit the same tensors (so bundles and hybrid_csa do not care which one ran):

* ``als`` (default): alternating ridge least squares with each bias folded in as an extra factor column. Every
  user's (k+1)×(k+1) normal matrix comes out of one sparse × dense product ``R_bin @ tril(Q̃ ⊗ Q̃)``, every
  right-hand side out of ``Y @ Q̃``, and one batched Cholesky solves them all; then the same for items.
  Weighted-λ regularisation (λ·n_u, Zhou et al. 2008), which makes ALS minimise exactly the per-rating objective
  that Surprise's SGD and our ``sgd`` solver minimise.
* ``sgd``: that objective, Σ_(u,i) (r_ui − r̂_ui)² + λ(‖p_u‖² + ‖q_i‖²) + λ_b(b_u² + b_i²), minimised by
  mini-batch gradient descent in the one Trainer.

See ``docs/models/svd.md`` for the equations mapped to this code and the choices made.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from attnrec.data.batches import RatingBatch, rating_batches
from attnrec.data.side import SideInputs
from attnrec.data.table import Interactions
from attnrec.errors import ConfigError
from attnrec.models.base import (
    FitReport,
    ModelConfig,
    Query,
    RatingPredictor,
    TaskKind,
    TorchRecommender,
    TrainableModule,
    register,
)

if TYPE_CHECKING:
    from attnrec.training.trainer import TrainerConfig


class SVDConfig(ModelConfig):
    """Hyper-parameters of biased MF. Defaults were chosen on the MovieLens-100k *validation* split
    (``docs/models/svd.md``); 50 factors because hybrid_csa reuses these vectors at that size."""

    factors: int = Field(50, ge=1)
    solver: Literal["als", "sgd"] = "als"
    #: weight of ‖p_u‖² + ‖q_i‖², per observed rating (Surprise's ``reg_pu``/``reg_qi``)
    reg: float = Field(0.12, ge=0)
    #: weight of b_u² + b_i²: once per user / item (``weighted_reg_bias=False``) or per rating (Surprise's
    #: ``reg_bu``/``reg_bi``, ``weighted_reg_bias=True``)
    reg_bias: float = Field(3.0, ge=0)
    #: ALS only: scale each row's ridge by its number of ratings (weighted-λ); False: one plain λ per row
    weighted_reg: bool = True
    #: n₀, pseudo-ratings of prior on every factor vector: with weighted-λ, p_u's penalty is λ(n_u + n₀)‖p_u‖²
    #: (q_i's alike). Pure weighted-λ (n₀ = 0) shrinks a 2-rating user as little, relatively, as a 200-rating one,
    #: and on sparse catalogues over-fits the many short rows; n₀ adds a fixed ridge λn₀ that matters only for them.
    #: 10 chosen on validation RMSE (docs/models/svd.md); ignored when weighted_reg is False
    reg_prior: float = Field(10.0, ge=0)
    #: bundles saved before the prior existed were trained without it (their fold-in must use the same ridge)
    bundle_legacy: ClassVar[dict[str, Any]] = {"reg_prior": 0.0}
    #: the same for the bias penalty. False (default): λ_b b_u² once per user, so b_u = Σ residuals / (n_u + λ_b),
    #: Koren's damped baseline estimate, which shrinks users and items with few ratings more than those with many
    #: (True: λ_b per rating, Surprise's reg_bu / reg_bi)
    weighted_reg_bias: bool = False
    #: ALS sweeps at most (each solves all users, then all items); SGD epochs come from the Trainer config
    iterations: int = Field(2, ge=1)
    #: ALS only: stop after this many sweeps without a better validation RMSE
    patience: int = Field(2, ge=1)
    #: ALS only: start from a truncated SVD of the bias residuals ("svd") or from N(0, init_std²) factors
    init: Literal["svd", "random"] = "svd"
    #: standard deviation of the normal initialisation of P and Q (Surprise's ``init_std_dev``)
    init_std: float = Field(0.1, gt=0)
    #: clip predictions to the [min, max] rating seen in training, as Surprise does
    clip: bool = True


class BiasedMF(TrainableModule):
    """Parameters μ (buffer), b_u, b_i, P, Q; the prediction and the per-rating penalised squared error."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        factors: int,
        init_std: float,
        reg: float,
        reg_bias: float,
        mu: float = 0.0,
        bias_counts: tuple[torch.Tensor, torch.Tensor] | None = None,
        reg_prior: float = 0.0,
        damped: bool | None = None,
    ) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.randn(n_users, factors) * init_std)
        self.q = nn.Parameter(torch.randn(n_items, factors) * init_std)
        self.bu = nn.Parameter(torch.zeros(n_users))
        self.bi = nn.Parameter(torch.zeros(n_items))
        self.mu: torch.Tensor
        self.register_buffer("mu", torch.tensor(float(mu)))
        self.reg, self.reg_bias, self.reg_prior = reg, reg_bias, reg_prior
        # damped bias penalty (weighted_reg_bias=False): λ_b b_u² once per user, i.e. λ_b b_u² / n_u per rating.
        # ``bias_counts`` are the per-user / per-item rating counts, needed by it and by the factor prior
        self.damped = bias_counts is not None if damped is None else damped
        if reg_prior > 0 and bias_counts is None:
            raise ConfigError("BiasedMF: reg_prior > 0 needs the per-user and per-item rating counts")
        if bias_counts is not None:
            self.user_count: torch.Tensor
            self.item_count: torch.Tensor
            self.register_buffer("user_count", bias_counts[0].float().clamp(min=1.0))
            self.register_buffer("item_count", bias_counts[1].float().clamp(min=1.0))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Unclipped r̂ for aligned index tensors ``users``, ``items`` (B,) -> (B,)."""
        return self.mu + self.bu[users] + self.bi[items] + (self.p[users] * self.q[items]).sum(-1)

    def objective(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        """Mean over the given ratings of (r − r̂)² + λ(‖p_u‖² + ‖q_i‖²) + λ_b(b_u² + b_i²), the bias terms divided
        by n_u and n_i when damped (so that over all ratings each bias is penalised once), plus the factor prior
        λn₀(‖p_u‖²/n_u + ‖q_i‖²/n_i) (over all ratings: λn₀‖p_u‖² once per user)."""
        err = ratings - self(users, items)
        pu2, qi2 = self.p[users].square().sum(-1), self.q[items].square().sum(-1)
        if self.reg_prior > 0:
            pu2 = pu2 * (1.0 + self.reg_prior / self.user_count[users])
            qi2 = qi2 * (1.0 + self.reg_prior / self.item_count[items])
        penalty = self.reg * (pu2 + qi2)
        bu2, bi2 = self.bu[users].square(), self.bi[items].square()
        if self.damped:
            bu2, bi2 = bu2 / self.user_count[users], bi2 / self.item_count[items]
        penalty = penalty + self.reg_bias * (bu2 + bi2)
        return (err.square() + penalty).mean()

    def loss(self, batch: RatingBatch) -> torch.Tensor:
        return self.objective(batch.users, batch.items, batch.ratings)


# ------------------------------------------------------------------------------------------------ ALS
def _sparse_csr(
    indptr: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    with warnings.catch_warnings():  # torch flags CSR as beta on first use; it is what we want here
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(indptr, indices, values, size=shape, check_invariants=False)


class ALSSide:
    """One side of the ALS problem (the rows being solved), laid out once per fit as CSR on ``device``.

    ``rows``, ``cols`` (N,) int64 and ``values`` (N,) are the observed entries with the global mean already
    subtracted (r_ui − μ); a repeated (row, col) pair stays two entries, each counting as one rating.
    """

    def __init__(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        values: np.ndarray,
        shape: tuple[int, int],
        device: torch.device | str = "cpu",
    ) -> None:
        order = np.argsort(rows, kind="stable")
        counts = np.bincount(rows, minlength=shape[0])
        indptr = np.concatenate([[0], np.cumsum(counts)])
        self.shape = shape
        self.device = torch.device(device)
        self.indptr = torch.from_numpy(indptr.astype(np.int64)).to(self.device)
        self.indices = torch.from_numpy(cols[order].astype(np.int64)).to(self.device)
        self.values = torch.from_numpy(values[order].astype(np.float32)).to(self.device)
        self.counts = torch.from_numpy(counts.astype(np.float32)).to(self.device)
        self._blocks = _length_blocks(counts, indptr, self.device)
        #: the column of every CSR position, then ``n_cols`` for the padding position ``nnz`` (a zero row)
        self._cols = torch.cat([self.indices, torch.tensor([shape[1]], device=self.device)])

    def solve(
        self, fixed: torch.Tensor, y: torch.Tensor, rhs: torch.Tensor, diag: torch.Tensor
    ) -> torch.Tensor:
        """(n_rows, m): every row's ridge solution x_u = (F_uᵀF_u + D_u)⁻¹ F_uᵀ y_u, where F_u (n_u, m) holds the
        rows of ``fixed`` (n_cols, m) the row observes, y_u its targets (``y``, (nnz,) in CSR order), ``rhs`` (n_rows,
        m) = F_uᵀ y_u and D_u = diag(``diag[u]``) (n_rows, m).

        Rows are taken in blocks of similar length (:func:`_length_blocks`), gathered into (rows, length, m) and
        solved with batched matmuls and Cholesky factorisations. A row with fewer entries than m, when D_u > 0,
        is solved in its dual form x_u = D_u⁻¹F_uᵀ(F_u D_u⁻¹F_uᵀ + I)⁻¹ y_u: an n_u × n_u system instead of an
        m × m one. On sparse catalogues most rows are that short, and the m × m factorisations were most of a
        sweep's cost. A singular m × m system (D_u = 0 and fewer than m entries) gets the minimum-norm
        least-squares solution. Empty rows get 0."""
        m = fixed.shape[1]
        padded = torch.cat([fixed, fixed.new_zeros(1, m)])
        y = torch.cat([y, y.new_zeros(1)])
        dual_ok = bool((diag > 0).all())
        x = fixed.new_zeros(self.shape[0], m)
        for rows, pos in self._blocks:
            block = padded[self._cols[pos]]  # (R, W, m); padding rows are zero and drop out of both forms
            if dual_ok and pos.shape[1] < m:
                scaled = block / diag[rows, None, :]
                kernel = torch.bmm(scaled, block.mT)
                kernel.diagonal(dim1=1, dim2=2).add_(1.0)
                chol, _ = torch.linalg.cholesky_ex(kernel)  # I + PSD: always positive definite
                w = torch.cholesky_solve(y[pos].unsqueeze(-1), chol)
                x[rows] = torch.bmm(scaled.mT, w).squeeze(-1)
                continue
            gram = torch.bmm(block.mT, block)
            gram.diagonal(dim1=1, dim2=2).add_(diag[rows])
            chol, info = torch.linalg.cholesky_ex(gram)
            b = rhs[rows].unsqueeze(-1)
            sol = torch.cholesky_solve(b, chol).squeeze(-1)
            bad = torch.nonzero(info).flatten()
            if len(bad):
                sol[bad] = (torch.linalg.pinv(gram[bad], hermitian=True) @ b[bad]).squeeze(-1)
            x[rows] = sol
        return x

    def residual(self, fixed_bias: torch.Tensor) -> torch.Tensor:
        """Y with y_ui = r_ui − μ − b_col(i): the targets of this side's ridge problems, sparse CSR."""
        return _sparse_csr(self.indptr, self.indices, self.values - fixed_bias[self.indices], self.shape)


#: about the most gathered floats one block of :meth:`ALSSide.solve` holds at 64 factors (64 MiB): memory stays
#: flat as the data grows
_BLOCK_FLOATS = 1 << 24


def _length_blocks(
    counts: np.ndarray, indptr: np.ndarray, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(rows (R,), positions (R, width))`` blocks for :meth:`ALSSide.solve`: rows whose lengths lie in one class
    (2^(j-1), 2^j], and the CSR positions of their entries row by row, padded with ``nnz`` (a zero entry) to the
    class's longest row. A class is cut into blocks of about ``_BLOCK_FLOATS / 64`` entries. Empty rows are in
    no block."""
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    nonempty = np.flatnonzero(counts > 0)
    nnz = int(indptr[-1])
    if len(nonempty) == 0:
        return out
    cls = np.ceil(np.log2(counts[nonempty])).astype(np.int64)
    for j in np.unique(cls):
        rows = nonempty[cls == j]
        width = int(counts[rows].max())
        for chunk in np.array_split(rows, -(-len(rows) * width // (_BLOCK_FLOATS // 64))):
            offset = np.arange(width)[None, :]
            pos = np.where(offset < counts[chunk, None], indptr[chunk, None] + offset, nnz)
            out.append((torch.from_numpy(chunk).to(device), torch.from_numpy(pos).to(device)))
    return out


def penalty_scales(
    counts: torch.Tensor, weighted: bool, weighted_bias: bool | None = None, prior: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row multipliers (s_factors, s_bias) of λ and λ_b: max(n_u, 1) where weighted, else 1; the factors'
    weighted scale plus ``prior`` (n₀). ``weighted_bias`` None means the same as ``weighted``."""
    n = counts.clamp(min=1.0)
    ones = torch.ones_like(n)
    wb = weighted if weighted_bias is None else weighted_bias
    return (n + prior if weighted else ones), (n if wb else ones)


def als_half_step(
    side: ALSSide,
    fixed: torch.Tensor,
    fixed_bias: torch.Tensor,
    reg: float,
    reg_bias: float,
    *,
    weighted: bool = True,
    weighted_bias: bool | None = None,
    prior: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Solve every row's ridge problem at once; returns (factors (n_rows, k), biases (n_rows,), objective).

    For row u with observed columns I(u), targets y_ui = r_ui − μ − b_i and q̃_i = [q_i, 1], x_u = [p_u, b_u]:

        (Σ_{i∈I(u)} q̃_i q̃_iᵀ + s_u Λ) x_u = Σ_{i∈I(u)} y_ui q̃_i,    Λ = diag(λ, …, λ, λ_b),

    s_u = max(n_u, 1) + n₀ (weighted-λ, n₀ = ``prior``) or 1 (plain), for the factor entries; the bias entry's
    scale is max(n_u, 1) or 1 as ``weighted_bias`` (default: ``weighted``) says. The right-hand sides are ``Y @ Q̃``;
    :meth:`ALSSide.solve` solves the systems in batches of rows of similar length (short rows in their dual form).
    ``fixed`` (n_cols, k) and ``fixed_bias`` (n_cols,) are the other side's factors and biases.

    ``objective`` is the value reached, Σ_u [‖y_u − Q̃_u x_u‖² + s_u x_uᵀΛx_u], read off the solved systems at no
    extra cost: at the solution A_u x_u = b_u it equals Σ_u (‖y_u‖² − x_uᵀ b_u).
    """
    n_rows, n_cols = side.shape
    k = fixed.shape[1]
    m = k + 1
    dev = side.device
    qt = torch.cat([fixed.to(dev, torch.float32), torch.ones(n_cols, 1, device=dev)], dim=1)
    resid = side.residual(fixed_bias.to(dev, torch.float32))
    rhs = torch.sparse.mm(resid, qt)
    scale, scale_b = penalty_scales(side.counts, weighted, weighted_bias, prior)
    penalty = scale[:, None] * torch.full((m,), float(reg), device=dev)
    penalty[:, k] = scale_b * float(reg_bias)
    x = side.solve(qt, resid.values(), rhs, penalty)
    objective = float(resid.values().double().square().sum() - (x.double() * rhs.double()).sum())
    return x[:, :k], x[:, k], objective


def svd_init(
    by_user: ALSSide,
    by_item: ALSSide,
    factors: int,
    reg_bias: float,
    *,
    weighted: bool = True,
    weighted_bias: bool | None = None,
    init_std: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A starting point for ALS: (Q (n_items, factors), b_i (n_items,)).

    Biases first (one biases-only ridge half-step per side), then a randomised truncated SVD (Halko et al. 2011,
    ``torch.svd_lowrank``, two power iterations) of the residual matrix r_ui − μ − b_u − b_i: Q = V_k S_k^½.
    Starting from the leading subspace of the residuals, the first user step already fits signal instead of
    random directions; ALS then needs about half the sweeps for the same validation RMSE. Columns beyond the
    matrix rank are drawn from N(0, init_std²). Uses the global torch RNG (seeded by the caller).
    """
    n_users, n_items = by_user.shape
    dev = by_user.device
    _, bu, _ = als_half_step(
        by_user,
        torch.zeros(n_items, 0, device=dev),
        torch.zeros(n_items, device=dev),
        0.0,
        reg_bias,
        weighted=weighted,
        weighted_bias=weighted_bias,
    )
    _, bi, _ = als_half_step(
        by_item,
        torch.zeros(n_users, 0, device=dev),
        bu,
        0.0,
        reg_bias,
        weighted=weighted,
        weighted_bias=weighted_bias,
    )
    rows = torch.repeat_interleave(torch.arange(n_users, device=dev), torch.diff(by_user.indptr))
    resid = by_user.values - bu[rows] - bi[by_user.indices]
    a = torch.sparse_coo_tensor(
        torch.stack([rows, by_user.indices]), resid, by_user.shape, check_invariants=False
    ).coalesce()
    rank = min(factors, n_users, n_items)
    q = torch.randn(n_items, factors, device=dev) * init_std
    if rank > 0:
        _, sv, v = torch.svd_lowrank(a, q=rank, niter=2)
        q[:, :rank] = v * sv.sqrt()
    return q, bi


def _prior(c: SVDConfig) -> float:
    """The factor prior n₀ the objective uses: ALS ignores it without the count-weighted ridge, and so does SGD,
    so that both solvers minimise one objective."""
    return c.reg_prior if c.weighted_reg else 0.0


def _als_options(c: SVDConfig) -> dict[str, Any]:
    """The penalty-shape keywords of :func:`als_half_step` that ``c`` sets."""
    return {"weighted": c.weighted_reg, "weighted_bias": c.weighted_reg_bias, "prior": c.reg_prior}


class ALSSolver:
    """ALS as an :class:`~attnrec.training.types.EpochSolver`: each epoch is one sweep (all users, then all items).

    A sweep starts from the module's Q and b_i (the initialisation writes them there), so the module's tensors
    are the solver's whole state and a checkpoint of them resumes exactly. The sides are laid out on the module's
    device.
    """

    def __init__(self, module: BiasedMF, train: Interactions, config: SVDConfig) -> None:
        c = config
        self.module, self.config, self.n_ratings = module, config, len(train)
        device = module.q.device
        centred = train.ratings.astype(np.float32) - np.float32(float(module.mu))
        shape = (train.n_users, train.n_items)
        self.by_user = ALSSide(train.users, train.items, centred, shape, device)
        self.by_item = ALSSide(train.items, train.users, centred, (shape[1], shape[0]), device)
        if c.init == "svd":
            q, bi = svd_init(
                self.by_user,
                self.by_item,
                c.factors,
                c.reg_bias,
                weighted=c.weighted_reg,
                weighted_bias=c.weighted_reg_bias,
                init_std=c.init_std,
            )
            with torch.no_grad():
                module.q.copy_(q)
                module.bi.copy_(bi)
        # init == "random": the module's N(0, init_std²) Q and zero b_i are the start

    def train_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        """One sweep; {"loss": the penalised objective reached, per training rating} (uses no randomness)."""
        c, m = self.config, self.module
        kw = _als_options(c)
        with torch.no_grad():
            p, bu, _ = als_half_step(self.by_user, m.q.detach(), m.bi.detach(), c.reg, c.reg_bias, **kw)
            q, bi, objective = als_half_step(self.by_item, p, bu, c.reg, c.reg_bias, **kw)
            # the item step's objective holds the squared errors and the item penalty; add the user penalty
            scale, scale_b = penalty_scales(
                self.by_user.counts, c.weighted_reg, c.weighted_reg_bias, c.reg_prior
            )
            penalty = scale * c.reg * p.square().sum(1) + scale_b * c.reg_bias * bu.square()
            objective += float(penalty.sum())
            for param, value in ((m.p, p), (m.q, q), (m.bu, bu), (m.bi, bi)):
                param.copy_(value)
        return {"loss": objective / self.n_ratings}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


@register
class SVD(TorchRecommender[SVDConfig], RatingPredictor):
    """Biased MF (Surprise's SVD) with a vectorised ALS solver and an SGD solver on the one Trainer.

    A query's history (with ratings as its values; without them each item counts as the top training rating)
    folds a user in by one ALS half-step against the fixed item factors.
    """

    name = "svd"
    task = TaskKind.RATING
    config_class = SVDConfig
    paper = "Koren, Bell, Volinsky 2009 (Surprise SVD)"
    query_inputs = frozenset({"users", "history"})

    #: Trainer settings the ``sgd`` solver uses for every field the caller's TrainerConfig leaves unset
    #: (tuned on the ML-100k validation split)
    sgd_trainer_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "adam",
        "lr": 0.02,
        "batch_size": 4096,
        "epochs": 40,
        "patience": 3,
    }

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
            None
            if c.weighted_reg_bias and _prior(c) == 0
            else (
                torch.from_numpy(np.bincount(train.users, minlength=train.n_users)),
                torch.from_numpy(np.bincount(train.items, minlength=train.n_items)),
            ),
            reg_prior=_prior(c),
            damped=not c.weighted_reg_bias,
        )

    def build_module_from_state(self, tensors: dict[str, torch.Tensor]) -> BiasedMF:
        c = self.config
        # the damped bias penalty's rating counts are saved with the model (bundles written before they were
        # have none: those load with the per-rating objective; predictions do not depend on it)
        counts = None
        if "user_count" in tensors and "item_count" in tensors:  # shaped by the vocabularies, checked on load
            counts = (torch.zeros(self.n_users), torch.zeros(self.n_items))
        # the prior's term needs the counts: a bundle without them gets the objective without the prior
        prior = _prior(c) if counts is not None else 0.0
        damped = counts is not None and not c.weighted_reg_bias
        return BiasedMF(
            self.n_users, self.n_items, c.factors, c.init_std, c.reg, c.reg_bias, 0.0, counts, prior, damped
        )

    def train_batches(
        self, train: Interactions, epoch: int, generator: torch.Generator, batch_size: int
    ) -> Iterator[RatingBatch]:
        return rating_batches(train, batch_size, generator=generator)

    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        side: SideInputs,
        trainer: TrainerConfig | None,
        run_key: str | None,
    ) -> FitReport:
        from attnrec.training.trainer import TrainerConfig

        if trainer is not None and not isinstance(trainer, TrainerConfig):
            raise ConfigError(f"fit(trainer=...) expects a TrainerConfig, got {type(trainer).__name__}")
        self.rating_range = train.rating_bounds()
        if self.config.solver == "sgd":
            report = super()._fit(train, valid, side, self.effective_trainer(trainer), run_key)
        else:
            report = self._fit_als(train, valid, trainer, run_key)
        self.mf.eval()
        return report

    def trainer_overrides(self) -> dict[str, tuple[Any, str]]:
        """Trainer fields the ALS solver sets itself: ``{field: (value, how to change it)}`` (none for SGD)."""
        c = self.config
        if c.solver == "sgd":
            return {}
        return {
            "epochs": (c.iterations, "svd's ALS sweeps are set by --set iterations=N"),
            "patience": (c.patience, "svd's ALS patience is set by --set patience=N"),
        }

    def unused_trainer_fields(self) -> dict[str, str]:
        """ALS solves each sweep in closed form: no optimiser, learning rate, batches or AMP (none for SGD)."""
        from attnrec.training.trainer import SGD_FIELDS

        if self.config.solver == "sgd":
            return {}
        why = "svd's ALS solves each sweep in closed form and never reads it (--set solver=sgd trains by SGD)"
        return dict.fromkeys(sorted(SGD_FIELDS), why)

    def effective_trainer(self, trainer: TrainerConfig | None) -> TrainerConfig:
        """The TrainerConfig a fit with ``trainer`` really uses: SGD fills the fields ``trainer`` leaves unset
        from :attr:`sgd_trainer_defaults`; ALS (default: CPU, no progress bar) takes epochs and patience from the
        model config (:meth:`trainer_overrides`)."""
        from attnrec.training.trainer import TrainerConfig

        if self.config.solver == "sgd":
            given = trainer.model_dump(exclude_unset=True) if trainer is not None else {}
            return TrainerConfig(**{**self.sgd_trainer_defaults, **given})
        return super().effective_trainer(
            trainer if trainer is not None else TrainerConfig(device="cpu", progress=False)
        )

    def _fit_als(
        self,
        train: Interactions,
        valid: Interactions | None,
        trainer: TrainerConfig | None,
        run_key: str | None,
    ) -> FitReport:
        """ALS sweeps as the epochs of the one Trainer: at most ``iterations`` sweeps, stopping after ``patience``
        sweeps without a better validation RMSE, the best sweep restored. The caller's TrainerConfig (default: CPU,
        no progress bar) gives the device, checkpoints, log and progress; epochs and patience are the model's."""
        from attnrec.training.trainer import Trainer
        from attnrec.training.types import RunIdentity, data_fingerprint

        c = self.config
        cfg = self.effective_trainer(trainer)
        tr = Trainer(cfg, valid_metric=cfg.valid_metric or "rmse", mode=cfg.valid_mode or "min")
        torch.manual_seed(c.seed)
        self.module, self.device = self.build_module(train).to(tr.device), tr.device
        solver = ALSSolver(self.mf, train, c)
        return tr.fit(
            solver,
            validate=self.validator(valid) if valid is not None else None,
            seed=c.seed,
            identity=RunIdentity(c.to_dict(), run_key or data_fingerprint(train, valid), c.bundle_legacy),
        )

    @property
    def mf(self) -> BiasedMF:
        """The fitted parameter module (typed)."""
        if not isinstance(self.module, BiasedMF):
            raise ConfigError("svd is not fitted: call fit() or load a bundle first")
        return self.module

    # ------------------------------------------------------------------ scoring
    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(*self.rating_range) if self.config.clip else x

    def clips_predictions(self) -> bool:
        return self.config.clip

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Ratings μ + b_u + b_i + q_iᵀp_u (clipped when ``clip``) for aligned index arrays (N,) -> (N,)."""
        users, items = self.check_pairs(users, items)
        u = torch.tensor(np.asarray(users, dtype=np.int64), device=self.device)
        i = torch.tensor(np.asarray(items, dtype=np.int64), device=self.device)
        with torch.no_grad():
            out = self.mf(u, i)
        return self._clip(out).cpu().numpy()

    def score_users(self, users: np.ndarray) -> torch.Tensor:
        """Scores of every item for ``users``: (len(users), n_items), one matmul; NOT clipped (ranking on clipped
        ratings would tie every item predicted above the top rating)."""
        m = self.mf
        u = torch.tensor(np.asarray(users, dtype=np.int64), device=self.device)
        with torch.no_grad():
            scores = torch.addmm(m.bu[u, None] + m.bi[None, :] + m.mu, m.p[u], m.q.T)
        return scores

    def score_history(self, query: Query) -> torch.Tensor:
        """Ratings of every item for users folded in from the query's history: one ALS half-step (the same ridge
        problem as fitting, item factors and biases fixed) per row, then the usual μ + b_u + b_i + q_iᵀp_u (unclipped, as :meth:`score_users`)."""
        assert query.history is not None
        h, m, c = query.history, self.mf, self.config
        values = h.values if h.values is not None else np.full(len(h.items), self.rating_range[1], np.float32)
        side = ALSSide(h.row_ids(), h.items, values - np.float32(m.mu), (len(h), self.n_items), self.device)
        with torch.no_grad():
            p, bu, _ = als_half_step(
                side,
                m.q.detach(),
                m.bi.detach(),
                c.reg,
                c.reg_bias,
                **_als_options(c),
            )
            scores = torch.addmm(bu[:, None] + m.bi[None, :] + m.mu, p, m.q.T)
        return scores

    @property
    def user_factors(self) -> np.ndarray:
        """P: (n_users, factors) float32, the user latent vectors (used by hybrid_csa)."""
        return self.mf.p.detach().cpu().numpy()

    @property
    def item_factors(self) -> np.ndarray:
        """Q: (n_items, factors) float32, the item latent vectors (used by hybrid_csa)."""
        return self.mf.q.detach().cpu().numpy()

    @property
    def user_biases(self) -> np.ndarray:
        """b_u: (n_users,) float32."""
        return self.mf.bu.detach().cpu().numpy()

    @property
    def item_biases(self) -> np.ndarray:
        """b_i: (n_items,) float32."""
        return self.mf.bi.detach().cpu().numpy()

    @property
    def global_mean(self) -> float:
        """μ, the mean training rating."""
        return float(self.mf.mu)


def als_refit(
    model: SVD, train: Interactions, rows: np.ndarray, sweeps: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refit a fitted ALS ``model``'s factors on the training rows ``rows`` only (an index or boolean mask into
    ``train``), starting from its item factors and biases and keeping its μ: (P, b_u, Q, b_i) on CPU.

    ``sweeps`` ALS sweeps (users, then items), then one more user half-step so that P matches the final Q. Started
    from the full fit, the refit stays in its coordinates (same rotation and scale of the latent space), so the
    vectors can stand in for the full fit's where a rating must not have seen itself — hybrid_csa's cross-fitted
    training (``svd_crossfit``). Users / items with no rating left in ``rows`` get zero vectors and biases.
    """
    c = model.config
    m = model.mf
    mu = float(m.mu)
    users, items = train.users[rows], train.items[rows]
    centred = train.ratings[rows].astype(np.float32) - np.float32(mu)
    shape = (train.n_users, train.n_items)
    by_user = ALSSide(users, items, centred, shape)
    by_item = ALSSide(items, users, centred, (shape[1], shape[0]))
    kw = _als_options(c)
    q, bi = m.q.detach().float().cpu(), m.bi.detach().float().cpu()
    with torch.no_grad():
        for _ in range(sweeps):
            p, bu, _ = als_half_step(by_user, q, bi, c.reg, c.reg_bias, **kw)
            q, bi, _ = als_half_step(by_item, p, bu, c.reg, c.reg_bias, **kw)
        p, bu, _ = als_half_step(by_user, q, bi, c.reg, c.reg_bias, **kw)
    return p, bu, q, bi

"""hybrid_csa's text-query ranking as one ONNX Runtime graph (``query_scorer="onnx"``).

A text query is ranked in two steps: retrieve the ``size`` items whose text is most similar to the query, then
score each (user, item, query) triple with the fusion network. In PyTorch that is some sixty small operators, each
paying Python and dispatcher overhead that outweighs its arithmetic at this size (about 2-3 ms on the 2-core
benchmark machine, as much as the int8 encoder). :class:`QueryGraph` is that whole step — cosine retrieval, the
text token's projection, every pair's attention and MLP, the SVD residual — written with the module's own methods
(``text_side``, ``token_layout``, ``fuse_states``) over the module's cached user and item tables, and exported once
per module state with ``torch.onnx.export``; ONNX Runtime then runs it as one call.

The graph is rebuilt whenever :meth:`HybridCSAModule.table_cache` is (any parameter or buffer replaced or updated
in place; as there, a write through ``.data`` into the same storage is not seen). Results equal the PyTorch path up
to float rounding; ties in relevance go to the lower item index in both (ONNX TopK's rule, a stable sort in
PyTorch).
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from attnrec.errors import require
from attnrec.text.fast import OPSET, onnx_session

if TYPE_CHECKING:
    from attnrec.models.rating.hybrid_csa.inference import TokenTables
    from attnrec.models.rating.hybrid_csa.module import HybridCSAModule

log = logging.getLogger(__name__)


class QueryGraph(nn.Module):
    """One user's text queries against the catalogue, as a traceable module.

    ``forward(text (Q, d_text) float, user (1,) int64, size () int64, exclude (I,) bool)``: ``user`` is a row of
    the cached user table (row ``n_users`` is the unknown user); ``exclude`` marks items never retrieved (the
    user's seen items). Returns the ``size`` retrieved items per query (Q, P) int64, best first, their cosine
    relevance (Q, P), the predicted ratings (Q, P) (unclipped) and, for the attention fusions, the head-averaged
    attention (Q, P, T, T)."""

    def __init__(self, module: HybridCSAModule, sides: tuple[TokenTables, TokenTables]) -> None:
        super().__init__()
        self.module = module
        user_side, item_side = sides
        text = module.item_text
        self.unit: torch.Tensor
        self.register_buffer("unit", text / text.norm(dim=1, keepdim=True).clamp_min(1e-12))
        self.user_side, self.item_side = user_side, item_side

    def forward(
        self, text: torch.Tensor, user: torch.Tensor, size: torch.Tensor, exclude: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        m = self.module
        unit = torch.nn.functional.normalize(text, dim=1)
        scores = (unit @ self.unit.T).masked_fill(exclude[None], -torch.inf)
        relevance, pool = torch.topk(scores, size, dim=1)  # type: ignore[arg-type]  # a tensor: K stays an input
        n_q, n_p = pool.shape[0], pool.shape[1]
        flat = pool.reshape(-1)

        def rows(table: torch.Tensor, by: str) -> torch.Tensor:  # (Q, P, ...): one row per pair
            rest = table.shape[1:]
            if by == "u":
                return table.index_select(0, user).unsqueeze(0).expand(n_q, n_p, *rest)
            if by == "i":
                return table.index_select(0, flat).reshape(n_q, n_p, *rest)
            return table.unsqueeze(1).expand(n_q, n_p, *rest)

        tables, states, reader = m.token_layout(self.user_side, self.item_side, m.text_side(text))

        def stacked(parts: list[torch.Tensor]) -> torch.Tensor:  # (Q·P, T, ...)
            out = torch.stack([rows(t, r) for t, r in zip(parts, reader, strict=True)], dim=2)
            return out.reshape(-1, *out.shape[2:])

        weights: torch.Tensor | None = None
        if m.attention is None:
            pred = m.mlp(stacked(tables).flatten(1)).squeeze(-1)
        else:
            x = stacked(tables) if m.needs_tokens else None
            pred, weights = m.fuse_states(stacked(states), x)
        pred = pred.reshape(n_q, n_p)
        if m.residual:
            assert self.user_side.svd is not None and self.item_side.svd is not None
            (u, bu), (q, bi) = self.user_side.svd, self.item_side.svd
            q_rows, bi_rows = q.index_select(0, flat), bi.index_select(0, flat)
            svd = m.svd_score(u.index_select(0, user), bu.index_select(0, user), q_rows, bi_rows)
            pred = pred + svd.reshape(n_q, n_p)
        if weights is None:
            return pool, relevance, pred
        return pool, relevance, pred, weights.reshape(n_q, n_p, *weights.shape[1:])


class QueryRunner:
    """A :class:`QueryGraph` exported and loaded in ONNX Runtime (``threads`` intra-op threads, no spinning).
    Call it like the graph with NumPy arrays; returns PyTorch tensors (the attention is None for concat_mlp)."""

    @staticmethod
    def check_installed() -> None:
        """Raise :class:`MissingExtraError` naming attnrec[fast] unless ONNX Runtime and onnx are importable."""
        require("onnxruntime", "fast")
        require("onnx", "fast")  # torch.onnx.export serialises through it

    def __init__(
        self, module: HybridCSAModule, sides: tuple[TokenTables, TokenTables], *, threads: int
    ) -> None:
        self.check_installed()
        t0 = time.perf_counter()
        graph = QueryGraph(module, sides).eval()
        n_items = int(module.item_text.shape[0])
        example = (
            torch.zeros(2, module.item_text.shape[1]),
            torch.zeros(1, dtype=torch.int64),
            torch.tensor(min(3, n_items)),
            torch.zeros(n_items, dtype=torch.bool),
        )
        self.with_weights = module.attention is not None
        outputs = ["pool", "relevance", "pred"] + (["weights"] if self.with_weights else [])
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), torch.no_grad():
            # tracer warnings on shape checks (the graph is only run within them)
            warnings.simplefilter("ignore")
            path = Path(tmp) / "query.onnx"
            torch.onnx.export(
                graph,
                example,
                path,
                input_names=["text", "user", "size", "exclude"],
                output_names=outputs,
                dynamic_axes={"text": {0: "queries"}, **{o: {0: "queries", 1: "pool"} for o in outputs}},
                opset_version=OPSET,
                dynamo=False,  # the TorchScript exporter: no onnxscript needed
            )
            self.session = onnx_session(path, threads=threads)  # loaded before the folder goes
        self.outputs = outputs
        # the exporter drops unused inputs (no user token for text_only without user text)
        self.inputs = {i.name for i in self.session.get_inputs()}
        log.debug("hybrid_csa query graph exported and loaded in %.2f s", time.perf_counter() - t0)

    def __call__(
        self, text: np.ndarray, user: int, size: int, exclude: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        feed: dict[str, Any] = {
            "text": np.ascontiguousarray(text, dtype=np.float32),
            "user": np.array([user], dtype=np.int64),
            "size": np.array(size, dtype=np.int64),
            "exclude": exclude,
        }
        feed = {k: v for k, v in feed.items() if k in self.inputs}
        out = [torch.from_numpy(a) for a in self.session.run(self.outputs, feed)]
        return out[0], out[1], out[2], (out[3] if self.with_weights else None)

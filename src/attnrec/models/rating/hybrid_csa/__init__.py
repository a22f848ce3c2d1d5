"""hybrid_csa: SVD latent factors and sentence embeddings fused by multi-head self-attention (paper 000).

The package, one concern a file (imports only go down this list; no cycle):

    config.py      HybridCSAConfig, the paper's trainer settings, shared constants
    inference.py   TokenTables (per-row tables a module scores from), the version-keyed cache, blocking, top-k
    inputs.py      the SVD stage, svd_crossfit refits and the encoded texts -> FitInputs
    cold_start.py  the ridge map text -> SVD item factors; adding never-seen items
    module.py      HybridCSAModule, the nn.Module (eq. 6-16), and the training batch
    onnx.py        the text-query step as one ONNX Runtime graph (query_scorer="onnx")
    text_blend.py  a text query's ranking: blend of relevance and rating, pool size, the weight's criterion
    core.py        the recommender's shared state: encoder, fitted module, row-wise forward, share columns
    queries.py     recommend_by_text(s): retrieve by relevance, score by the model, rank by the blend
    explain.py     explain, attention_report
    model.py       HybridCSA, the registered recommender: fit, predict / score, add_items, bundle I/O

``attnrec.models.rating.hybrid_csa`` stays the registry's module path and the class path bundles record.
"""

from attnrec.models.rating.hybrid_csa.cold_start import fit_text_to_factors, text_to_factors
from attnrec.models.rating.hybrid_csa.config import PAPER_TRAINER, Fusion, HybridCSAConfig
from attnrec.models.rating.hybrid_csa.explain import HISTORY_BUCKETS
from attnrec.models.rating.hybrid_csa.inference import TokenTables
from attnrec.models.rating.hybrid_csa.inputs import FitInputs
from attnrec.models.rating.hybrid_csa.model import HybridCSA
from attnrec.models.rating.hybrid_csa.module import HybridBatch, HybridCSAModule

__all__ = [
    "HISTORY_BUCKETS",
    "PAPER_TRAINER",
    "FitInputs",
    "Fusion",
    "HybridBatch",
    "HybridCSA",
    "HybridCSAConfig",
    "HybridCSAModule",
    "TokenTables",
    "fit_text_to_factors",
    "text_to_factors",
]

"""Every CTR model passes the conformance suite on planted synthetic data (tiny dims, few epochs)."""

from __future__ import annotations

from attnrec.models.ctr.afm import AFM
from attnrec.models.ctr.autoint import AutoInt
from attnrec.models.ctr.dcn import DCN
from attnrec.models.ctr.deepfm import DeepFM
from attnrec.models.ctr.fm import FM
from attnrec.models.ctr.lr import LR
from attnrec.models.ctr.nfm import NFM
from attnrec.models.ctr.xdeepfm import XDeepFM
from attnrec.testing import ConformanceTests


class TestLR(ConformanceTests):
    model_class = LR
    pattern = "first_order"  # LR cannot represent the planted interaction
    trainer = {"epochs": 8, "batch_size": 256, "lr": 0.05, "patience": 3}


class TestFM(ConformanceTests):
    model_class = FM
    config = {"embedding_dim": 8}


class TestNFM(ConformanceTests):
    model_class = NFM
    config = {"embedding_dim": 8, "hidden": [16]}


class TestAFM(ConformanceTests):
    model_class = AFM
    config = {"embedding_dim": 8, "attention_dim": 8}


class TestDeepFM(ConformanceTests):
    model_class = DeepFM
    config = {"embedding_dim": 8, "hidden": [16]}


class TestXDeepFM(ConformanceTests):
    model_class = XDeepFM
    config = {"embedding_dim": 8, "hidden": [16], "cin_layers": [8, 8]}


class TestDCNParallel(ConformanceTests):
    model_class = DCN
    config = {"embedding_dim": 8, "hidden": [16], "cross_layers": 2}


class TestDCNStacked(ConformanceTests):
    model_class = DCN
    config = {"embedding_dim": 8, "hidden": [16], "cross_layers": 2, "structure": "stacked"}


class TestAutoInt(ConformanceTests):
    model_class = AutoInt
    config = {"embedding_dim": 8, "attention_layers": 1, "heads": 2, "head_dim": 4}


class TestAutoIntPlus(ConformanceTests):
    model_class = AutoInt
    config = {
        "embedding_dim": 8,
        "attention_layers": 1,
        "heads": 2,
        "head_dim": 4,
        "hidden": [16],
        "use_linear": True,
    }


def test_nfm_and_secn_dropout_defaults_are_the_validation_choice() -> None:
    # issue 18: chosen on validation logloss on MovieLens-CTR, Criteo and Avazu (docs/models/nfm.md, secn.md)
    from attnrec.models.ctr.secn import SECNConfig

    nfm = NFM().config
    assert (nfm.dropout, nfm.bi_dropout) == (0.5, 0.5)
    assert SECNConfig().dropout == 0.5

"""Feature layer and interaction blocks against small hand-computed cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from attnrec.data.batches import CTRBatch
from attnrec.data.schema import FeatureSchema, FieldSpec
from attnrec.errors import DataError
from attnrec.models.ctr.secn import SeparationCrossLayer
from attnrec.models.layers.features import FeatureEmbedding, FeatureLinear, l2_per_row
from attnrec.models.layers.interaction import (
    CIN,
    MLP,
    AttentionalPairPooling,
    CrossNetV2,
    InteractingLayer,
    bi_interaction,
    fm_second_order,
    pair_indices,
    pairwise_products,
)


def schema() -> FeatureSchema:
    return FeatureSchema(
        fields=[
            FieldSpec(name="u", vocab_size=3),
            FieldSpec(name="price", kind="numeric"),
            FieldSpec(name="i", vocab_size=4),
            FieldSpec(name="tags", kind="multi", vocab_size=5, max_len=3, pooling="mean"),
            FieldSpec(name="cats", kind="multi", vocab_size=3, max_len=2, pooling="sum"),
        ]
    )


def batch() -> CTRBatch:
    return CTRBatch(
        labels=torch.tensor([1.0, 0.0]),
        categorical=torch.tensor([[2, 3], [0, 1]]),
        numeric=torch.tensor([[2.0], [-0.5]]),
        multi=torch.tensor([[[1, 4, 0], [2, 0, 0]], [[0, 0, 0], [1, 2, 0]]]),
    )


def test_feature_embedding_matches_manual_lookup() -> None:
    torch.manual_seed(0)
    layer = FeatureEmbedding(schema(), 4, init_std=1.0)
    w, nw = layer.table.weight.detach(), layer.numeric_weight.detach()
    out = layer(batch())
    assert out.shape == (2, 5, 4)  # categorical u, i; numeric price; multi tags, cats
    # one table: u rows 0..2, i rows 3..6, tags rows 7..11, cats rows 12..14
    torch.testing.assert_close(out[0, 0], w[2])
    torch.testing.assert_close(out[0, 1], w[3 + 3])
    torch.testing.assert_close(out[1, 0], w[0])  # index 0 (missing) has its own learned row
    torch.testing.assert_close(out[0, 2], 2.0 * nw[0])
    torch.testing.assert_close(out[1, 2], -0.5 * nw[0])
    torch.testing.assert_close(out[0, 3], (w[7 + 1] + w[7 + 4]) / 2)  # mean of the two tokens, padding masked
    torch.testing.assert_close(out[0, 4], w[12 + 2])  # sum pooling of one token
    torch.testing.assert_close(out[1, 3], torch.zeros(4))  # empty bag
    torch.testing.assert_close(out[1, 4], w[12 + 1] + w[12 + 2])


def test_feature_embedding_rejects_wrong_widths_and_unfitted_schema() -> None:
    layer = FeatureEmbedding(schema(), 2)
    b = batch()
    with pytest.raises(DataError, match="categorical.*'u', 'i'"):
        layer(CTRBatch(b.labels, b.categorical[:, :1], b.numeric, b.multi))
    with pytest.raises(DataError, match="multi"):
        layer(CTRBatch(b.labels, b.categorical, b.numeric, b.multi[:, :, :2]))
    with pytest.raises(DataError, match="'u'"):
        FeatureEmbedding(FeatureSchema(fields=[FieldSpec(name="u")]), 2)


def test_feature_linear_is_bias_plus_field_weights() -> None:
    lin = FeatureLinear(schema())
    with torch.no_grad():
        lin.weights.table.weight.copy_(torch.arange(15, dtype=torch.float32)[:, None])
        lin.weights.numeric_weight.fill_(10.0)
        lin.bias.fill_(0.5)
    # row 0: u=2 -> 2; i=3 -> 6; price 2*10; tags mean(8, 11); cats 14
    assert lin(batch())[0].item() == pytest.approx(0.5 + 2 + 6 + 20 + 9.5 + 14)
    assert l2_per_row(torch.ones(2, 3), torch.ones(2, 1)).item() == pytest.approx((6 + 2) / 2)


def test_fm_term_equals_pairwise_sum() -> None:
    emb = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(1))
    pairwise = sum((emb[:, i] * emb[:, j]).sum(-1) for i, j in itertools.combinations(range(5), 2))
    torch.testing.assert_close(fm_second_order(emb), pairwise)
    hand = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [0.5, 0.0]]])
    # <v1,v2> + <v1,v3> + <v2,v3> = (3 - 2) + 0.5 + 1.5 = 3
    assert fm_second_order(hand).item() == pytest.approx(3.0)


def test_bi_interaction_is_elementwise_pair_sum() -> None:
    hand = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [0.5, 0.0]]])
    # v1*v2 + v1*v3 + v2*v3 = (3, -2) + (0.5, 0) + (1.5, 0)
    torch.testing.assert_close(bi_interaction(hand), torch.tensor([[5.0, -2.0]]))
    emb = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(bi_interaction(emb), pairwise_products(emb).sum(1))


def test_pair_indices_order() -> None:
    rows, cols = pair_indices(3)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2)]


def test_afm_attention_weights_sum_to_one_and_match_manual() -> None:
    torch.manual_seed(0)
    pool = AttentionalPairPooling(dim=2, attention_dim=3)
    emb = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [0.5, 0.0]]])
    pooled, weights = pool(emb)
    torch.testing.assert_close(weights.sum(1), torch.ones(1))
    pairs = [emb[0, 0] * emb[0, 1], emb[0, 0] * emb[0, 2], emb[0, 1] * emb[0, 2]]
    W, b, h = pool.proj.weight.detach(), pool.proj.bias.detach(), pool.h.weight.detach()[0]
    scores = torch.stack([h @ torch.relu(W @ p + b) for p in pairs])
    a = torch.exp(scores) / torch.exp(scores).sum()
    torch.testing.assert_close(weights[0], a)
    torch.testing.assert_close(pooled[0], sum(a[k] * pairs[k] for k in range(3)))


def test_one_cin_layer_matches_einsum() -> None:
    torch.manual_seed(0)
    cin = CIN(n_fields=3, layer_sizes=[4], split_half=False)
    x0 = torch.randn(2, 3, 5)
    w = cin.convs[0].weight.detach().view(4, 3, 3)  # (H, i, j): channel index i * m + j
    bias = cin.convs[0].bias.detach()
    x1 = torch.einsum("hij,bid,bjd->bhd", w, x0, x0) + bias[None, :, None]
    torch.testing.assert_close(cin(x0), x1.sum(-1))


def test_cin_split_half_routes_half_to_output() -> None:
    cin = CIN(n_fields=3, layer_sizes=[4, 6], split_half=True)
    assert cin.output_dim == 2 + 6
    assert cin.convs[1].in_channels == 2 * 3
    assert cin(torch.randn(2, 3, 5)).shape == (2, 8)
    with pytest.raises(ValueError, match="even"):
        CIN(3, [3, 2], split_half=True)


def test_dcn_v2_cross_layer() -> None:
    torch.manual_seed(0)
    net = CrossNetV2(dim=3, n_layers=1)
    x0 = torch.tensor([[1.0, -2.0, 0.5]])
    W, b = net.layers[0].weight.detach(), net.layers[0].bias.detach()
    torch.testing.assert_close(net(x0), x0 * (x0 @ W.T + b) + x0)
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.eye(3))
        net.layers[0].bias.fill_(1.0)
    # x0 * (x0 + 1) + x0 = (1*2+1, -2*-1-2, 0.5*1.5+0.5)
    torch.testing.assert_close(net(x0), torch.tensor([[3.0, 0.0, 1.25]]))


@pytest.mark.parametrize("scaled", [False, True])
def test_interacting_layer_matches_manual_softmax(scaled: bool) -> None:
    torch.manual_seed(0)
    layer = InteractingLayer(in_dim=4, head_dim=3, n_heads=2, residual=True, scaled=scaled)
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        out, weights = layer(x)
    assert out.shape == (2, 5, 6) and weights.shape == (2, 2, 5, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))
    Wq, Wk, Wv, Wr = (m.weight.detach() for m in (layer.query, layer.key, layer.value, layer.res))
    b, h, i = 1, 1, 3  # row 1, head 1, field 3
    q = (x[b] @ Wq.T)[:, 3:6]
    k = (x[b] @ Wk.T)[:, 3:6]
    v = (x[b] @ Wv.T)[:, 3:6]
    s = np.array([float(q[i] @ k[j]) for j in range(5)]) / (np.sqrt(3) if scaled else 1.0)
    alpha = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    np.testing.assert_allclose(weights[b, h, i].numpy(), alpha, rtol=1e-5)
    manual = torch.relu(torch.from_numpy(alpha).float() @ v + (x[b] @ Wr.T)[i, 3:6])
    torch.testing.assert_close(out[b, i, 3:6], manual)


def test_mlp_shapes() -> None:
    mlp = MLP(6, [4, 3], dropout=0.1, batch_norm=True, out_dim=1)
    assert mlp(torch.randn(5, 6)).shape == (5, 1)
    assert MLP(6, []).output_dim == 6


# ----------------------------------------------------------------------- secn's separation cross layer


def hand_layer(per_dimension: bool = False) -> SeparationCrossLayer:
    layer = SeparationCrossLayer(n_fields=2, dim=2, act="identity", per_dimension=per_dimension)
    with torch.no_grad():
        wc = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
        wr = torch.tensor([[0.5, 0.0], [1.0, 1.0]])
        if per_dimension:  # dimension 1 gets twice the weights of dimension 0
            layer.w_c.copy_(torch.stack([wc, 2 * wc]))
            layer.w_r.copy_(torch.stack([wr, 2 * wr]))
            layer.b_c.copy_(torch.tensor([[0.1, -0.2], [0.0, 0.0]]))
        else:
            layer.w_c.copy_(wc)
            layer.w_r.copy_(wr)
            layer.b_c.copy_(torch.tensor([0.1, -0.2]))
    return layer


H = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])  # fields x dimensions: column k is dimension k
H0 = torch.tensor([[[2.0, 0.0], [1.0, 1.0]]])


def test_secn_cross_layer_previous_reading_by_hand() -> None:
    # dimension 0: h = (1, 3), h*h = (1, 9); W_C (1, 9) = (19, -9); W_R h = (0.5, 4); + b = (19.6, -5.2)
    # dimension 1: h = (2, -1), h*h = (4, 1); W_C = (6, -1); W_R h = (1, 1); + b = (7.1, -0.2)
    want = torch.tensor([[[19.6, 7.1], [-5.2, -0.2]]])
    torch.testing.assert_close(hand_layer()(H), want)


def test_secn_cross_layer_first_reading_by_hand() -> None:
    # dimension 0: h0*h = (2, 3); W_C = (8, -3); W_R h = (0.5, 4); + b = (8.6, 0.8)
    # dimension 1: h0*h = (0, -1); W_C = (-2, 1); W_R h = (1, 1); + b = (-0.9, 1.8)
    want = torch.tensor([[[8.6, -0.9], [0.8, 1.8]]])
    torch.testing.assert_close(hand_layer()(H, H0), want)


def test_secn_cross_layer_dimensions_are_independent_and_relu_applies() -> None:
    layer = hand_layer()
    # changing dimension 1 of the input leaves dimension 0 of the output unchanged
    other = H.clone()
    other[0, :, 1] = torch.tensor([7.0, 8.0])
    torch.testing.assert_close(layer(other)[..., 0], layer(H)[..., 0])
    layer.act = torch.nn.ReLU()
    torch.testing.assert_close(layer(H), torch.tensor([[[19.6, 7.1], [0.0, 0.0]]]))


def test_secn_cross_layer_per_dimension_weights_by_hand() -> None:
    # dimension 0 as in the shared case; dimension 1 with doubled weights and zero bias:
    # 2 * (6, -1) + 2 * (1, 1) + (0, 0) = (14, 0)
    want = torch.tensor([[[19.6, 14.0], [-5.2, 0.0]]])
    torch.testing.assert_close(hand_layer(per_dimension=True)(H), want)

import numpy as np

from attnrec.models.query import Query
from attnrec.models.topk.pop import Pop
from attnrec.testing import ConformanceTests, checkerboard


class TestPopConformance(ConformanceTests):
    model_class = Pop
    recovers_planted_pattern = False


def test_pop_scores_are_training_counts():
    train, _, _ = checkerboard(implicit=True)
    model = Pop()
    model.fit(train)
    counts = np.bincount(train.items, minlength=train.n_items)
    np.testing.assert_array_equal(
        model.score_pairs(np.zeros(train.n_items, int), np.arange(train.n_items)), counts
    )
    np.testing.assert_array_equal(
        model.score(Query(users=np.array([0, 5]))).numpy(), np.stack([counts, counts])
    )
    top = model.recommend(["u0"], k=1, exclude_seen=False)["item_id"][0]
    assert top == train.item_vocab.ids[int(np.argmax(counts))]

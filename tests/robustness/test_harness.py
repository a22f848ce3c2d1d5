"""The harness itself can fail: a clean error passes, a crash, a zero exit and a missing fragment do not."""

import pytest

from .conftest import Probe, assert_clean_error, assert_ok


def test_unknown_model_is_a_clean_error(cli, tmp_path) -> None:
    probe = cli(["train", "--model", "no-such-model", "--data", "ml-100k", "--out", tmp_path / "run"])
    assert_clean_error(probe, "no-such-model")


def test_models_lists_ok(cli) -> None:
    assert_ok(cli(["models"]))


@pytest.mark.parametrize(
    "probe",
    [
        Probe(["x"], 0, "", "error: bad"),  # exit 0 on bad input
        Probe(["x"], 2, "", "Traceback (most recent call last):\n  boom"),  # a traceback
        Probe(["x"], 1, "", "", crash="Traceback ... KeyError"),  # an escaping exception
        Probe(["x"], 2, "", "error: something else"),  # does not name the fragment
    ],
)
def test_harness_rejects_bad_outcomes(probe: Probe) -> None:
    with pytest.raises(AssertionError):
        assert_clean_error(probe, "bad")

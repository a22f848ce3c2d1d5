"""The ECE noise floor of a perfectly calibrated model, and the reliability diagram (plots extra)."""

import sys

import numpy as np
import pytest

from attnrec.errors import MissingExtraError
from attnrec.evaluation.calibration import ece_noise_floor, plot_reliability, reliability_curve


def test_noise_floor_is_zero_when_labels_are_certain() -> None:
    p = np.array([0.0, 1.0, 1.0, 0.0] * 10)
    assert ece_noise_floor(p, n_bins=4, draws=5) == (0.0, 0.0)


def test_noise_floor_shrinks_with_rows_like_one_over_sqrt_n() -> None:
    rng = np.random.default_rng(1)
    small = ece_noise_floor(rng.uniform(0.05, 0.6, 400), draws=100)
    large = ece_noise_floor(rng.uniform(0.05, 0.6, 40_000), draws=20)
    # 400 rows in 15 bins: ~27 rows a bin, binomial s.e. ~0.08, so the mean |gap| is several hundredths
    assert 0.03 < small[0] < 0.08 and small[1] > small[0]
    assert large[0] < 0.01
    assert small == ece_noise_floor(np.random.default_rng(1).uniform(0.05, 0.6, 400), draws=100)


def test_reliability_plot_writes_a_png(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 500)
    y = rng.random(500) < p
    curves = {"raw": reliability_curve(y, p), "sharpened": reliability_curve(y, p**2)}
    out = plot_reliability(curves, tmp_path / "sub" / "rel.png", title="test")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_reliability_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch) -> None:
    for name in ("matplotlib", "matplotlib.figure"):  # importing them now raises ImportError
        monkeypatch.setitem(sys.modules, name, None)
    curve = reliability_curve([0, 1, 1, 0], [0.1, 0.8, 0.7, 0.3], n_bins=2)
    with pytest.raises(MissingExtraError, match="plots"):
        plot_reliability({"m": curve}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()

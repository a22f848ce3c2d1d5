"""benchmarks/bench_multimodal.py: Food-Kitchen's TF-IDF text modality and the resumable results file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attnrec.testing.scripts import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_multimodal.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    return load_script(BENCH)


def test_tfidf_modality_unit_rows_and_mean_fallback(bench):  # type: ignore[no-untyped-def]
    titles = ["green tea", "green tea bags", "black tea", "black coffee", "coffee beans", "zzz"]
    z = bench.tfidf_modality(titles, dim=3)
    assert z.shape == (6, 3) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    # "zzz" has no term seen twice (min_df 2): it gets the (re-normalised) mean of the other rows, not zeros
    mean = z[:5].mean(axis=0)
    assert np.all(np.isfinite(z[5])) and float(z[5] @ (mean / np.linalg.norm(mean))) > 0.5
    # titles sharing a term are closer than titles sharing none
    assert float(z[0] @ z[1]) > float(z[0] @ z[4])


def test_records_reads_what_emit_appends(bench, tmp_path):  # type: ignore[no-untyped-def]
    out = tmp_path / "r.jsonl"
    assert bench._records(out) == []
    rows = [
        {"library": "mmrec", "model": "GRCN", "seed": 1},
        {"library": "attnrec", "model": "bpr", "seed": 0},
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert [(r["library"], r["model"], r["seed"]) for r in bench._records(out)] == [
        ("mmrec", "GRCN", 1),
        ("attnrec", "bpr", 0),
    ]


def test_cornac_vbpr_gets_the_modalities_this_run_exported(bench, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """A text-only export (Food-Kitchen) gives Cornac's VBPR text_feat.npy alone (it asked for image_feat.npy too
    and failed on a missing file), whatever else lies in the folder; text and meta give both files."""
    seen: list[list[str]] = []

    def fake(folder, name, seed, features, **kw):  # type: ignore[no-untyped-def]
        seen.append(list(features))
        raise RuntimeError("stop here")

    monkeypatch.setattr(bench, "run_cornac_vbpr", fake)
    np.save(tmp_path / "image_feat.npy", np.zeros((3, 2), np.float32))  # stale, from an earlier export
    for modalities, expected in (
        (["text"], ["text_feat.npy"]),
        (["text", "image"], ["text_feat.npy", "image_feat.npy"]),
    ):
        with pytest.raises(RuntimeError, match="stop here"):
            bench.cornac_row(tmp_path, "x", modalities, 0, 1, None, None, tmp_path)
        assert seen[-1] == expected


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("Cornac VBPR failed (rc 1)"),
        FileNotFoundError("no cornac python"),
        ValueError("not JSON"),
    ],
)
def test_a_failed_cornac_fit_is_recorded_not_fatal(bench, error):  # type: ignore[no-untyped-def]
    def fit():  # type: ignore[no-untyped-def]
        raise error

    rec = bench.cornac_or_failure(2, fit)
    assert (rec["library"], rec["model"], rec["seed"]) == ("cornac", "VBPR", 2)
    assert (
        rec["failed"].startswith(type(error).__name__)
        and str(error) in rec["failed"]
        and len(rec["load"]) == 2
    )
    assert bench.cornac_or_failure(2, lambda: {"library": "cornac", "ok": 1}) == {
        "library": "cornac",
        "ok": 1,
    }
    with pytest.raises(KeyboardInterrupt):  # not a fit failure: the run stops
        bench.cornac_or_failure(2, lambda: (_ for _ in ()).throw(KeyboardInterrupt()))

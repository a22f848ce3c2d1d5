"""benchmarks/bench_multimodal.py: Food-Kitchen's TF-IDF text modality and the resumable results file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attnrec.testing.scripts import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_multimodal.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    return load_script(BENCH)


class _Split:
    """What main() reads of a split (its sizes; the matrices go to a faked evaluator)."""

    n_users = n_items = 2

    def __len__(self) -> int:
        return 1

    def csr(self) -> None:
        return None


def fake_data(  # type: ignore[no-untyped-def]
    bench, monkeypatch, feats: dict[str, np.ndarray] | None = None, exported: list[np.ndarray] | None = None
) -> None:
    """main() without data: a two-user split, the modalities ``feats``, the export only recorded in ``exported``."""
    monkeypatch.setattr(bench, "load", lambda *a: (_Split(), _Split(), _Split(), {}, None))
    monkeypatch.setattr(
        bench, "modalities", lambda *a: {"text": np.zeros((2, 2))} if feats is None else feats
    )
    monkeypatch.setattr(
        bench, "write_mmrec", lambda *a: None if exported is None else exported.append(a[-1]["text"])
    )
    monkeypatch.setattr(bench, "mmrec_commit", lambda: "x")


def run_main(bench, monkeypatch, out: Path, *argv: str) -> None:  # type: ignore[no-untyped-def]
    """main() on the vbpr row, seed 0, results in ``out``, exports beside it (never the real folders)."""
    base = [
        "bench_multimodal.py",
        "--models",
        "vbpr",
        "--seeds",
        "0",
        "--out",
        str(out),
        "--work",
        str(out.parent),
    ]
    monkeypatch.setattr("sys.argv", [*base, *argv])
    bench.main()


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

    rec = bench.fit_or_failure("cornac", "VBPR", 2, fit)
    assert (rec["library"], rec["model"], rec["seed"]) == ("cornac", "VBPR", 2)
    assert (
        rec["failed"].startswith(type(error).__name__)
        and str(error) in rec["failed"]
        and len(rec["load"]) == 2
    )
    assert bench.fit_or_failure("cornac", "VBPR", 2, lambda: {"library": "cornac", "ok": 1}) == {
        "library": "cornac",
        "ok": 1,
    }
    with pytest.raises(KeyboardInterrupt):  # not a fit failure: the run stops
        bench.fit_or_failure("cornac", "VBPR", 2, lambda: (_ for _ in ()).throw(KeyboardInterrupt()))


def test_trainer_overrides_reach_the_fit_and_are_recorded(bench, monkeypatch):  # type: ignore[no-untyped-def]
    from attnrec.testing import checkerboard

    train, valid, test = checkerboard()
    feats = {"text": np.random.default_rng(0).normal(size=(train.n_items, 4)).astype(np.float32)}
    seen = []
    real_fit = bench.get_model_class("vbpr").fit

    def fit(self, *args, trainer, **kw):  # type: ignore[no-untyped-def]
        seen.append(trainer)
        return real_fit(self, *args, trainer=trainer, **kw)

    monkeypatch.setattr(bench.get_model_class("vbpr"), "fit", fit)
    base = bench.fit_ours("vbpr", 0, (train, valid, test), feats, epochs=1, patience=1)
    rec = bench.fit_ours(
        "vbpr", 0, (train, valid, test), feats, 1, 1, trainer_overrides={"adam_eps": 1e-12, "lr": 0.01}
    )
    assert (seen[0].adam_eps, seen[0].lr, seen[0].batch_size) == (1e-8, 1e-3, 2048)  # the protocol's
    assert (seen[1].adam_eps, seen[1].lr, seen[1].batch_size) == (1e-12, 0.01, 2048)  # overridden, rest kept
    assert "trainer_overrides" not in base and rec["trainer_overrides"] == {"adam_eps": 1e-12, "lr": 0.01}
    assert bench.variant_of(base) == ({}, {}, "raw") and bench.variant_of(rec) == (
        {},
        {"adam_eps": 1e-12, "lr": 0.01},
        "raw",
    )
    tuned = bench.fit_ours("vbpr", 0, (train, valid, test), feats, 1, 1, overrides={"reg": 0.0})
    assert bench.variant_of(tuned) == ({"reg": 0.0}, {}, "raw")


def test_the_report_keeps_a_variant_apart_from_the_protocols_row(  # type: ignore[no-untyped-def]
    bench, tmp_path, capsys
):
    test = {"recall@10": 0.1, "recall@20": 0.2, "ndcg@10": 0.05, "ndcg@20": 0.06}
    recs = [
        {"library": "attnrec", "model": "vbpr", "seed": 0, "test": test, "best_epoch": 10},
        {
            "library": "attnrec",
            "model": "vbpr",
            "seed": 0,
            "test": test,
            "trainer_overrides": {"adam_eps": 1e-12},
        },
        {
            "library": "attnrec",
            "model": "lightgcn",
            "seed": 0,
            "test": test,
            "overrides": {"reg": 0, "n_layers": 3},
        },
        {
            "library": "attnrec",
            "model": "lightgcn",
            "seed": 1,
            "test": test,
            "overrides": {"n_layers": 3, "reg": 0},
        },
    ]
    out = tmp_path / "r.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in recs))
    bench.report(out)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| attnrec")]
    assert [ln.split(" | ")[1:3] for ln in lines] == [
        ["vbpr", "1"],
        ["vbpr trainer.adam_eps=1e-12", "1"],
        ["lightgcn n_layers=3 reg=0", "2"],  # one variant whatever the order its settings were given in
    ]


def test_a_variant_refuses_peers_and_bad_settings_before_loading_data(  # type: ignore[no-untyped-def]
    bench, monkeypatch, capsys
):
    def no_load(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("the data were loaded")

    monkeypatch.setattr(bench, "load", no_load)
    for argv, message in [
        (["--trainer-set", "adam_eps=1e-12"], "change our rows only"),  # default --peers: mmrec,cornac
        (["--peers", "", "--models", "mmrec:MMGCN", "--set", "reg=0"], "change our rows only"),
        (
            ["--peers", "", "--trainer-set", "adam_eps=0"],
            "--trainer-set adam_eps: Input should be greater than 0",
        ),
        (["--peers", "", "--trainer-set", "adam_epsilon=1e-12"], "--trainer-set adam_epsilon: Extra inputs"),
        (["--peers", "", "--trainer-set", "epochs=5"], "use --epochs"),
        (["--peers", "", "--set", "reg"], "expected KEY=VALUE"),
        (["--peers", "", "--peer-timeout", "0"], "--peer-timeout must be a positive number of seconds"),
        (["--peers", "", "--models", "lightgcn", "--set", "regg=0"], "field 'regg'"),
        (["--peers", "", "--models", "freedom,lattice", "--set", "reg_weight=0"], "on row 'lattice'"),
        (["--peers", "", "--models", "lightgcnn", "--set", "reg=0"], "not a row of ours"),
    ]:
        monkeypatch.setattr("sys.argv", ["bench_multimodal.py", *argv])
        with pytest.raises(SystemExit):
            bench.main()
        assert message in capsys.readouterr().err


def test_a_variant_and_the_protocols_row_never_stand_in_for_each_other(  # type: ignore[no-untyped-def]
    bench, monkeypatch, tmp_path
):
    """main()'s resume: a variant's record is not taken as the protocol's row (nor its best epoch given to Cornac),
    the same variant is not fitted twice, and another variant is fitted."""
    fits: list[tuple[Any, Any]] = []
    cornac_epochs: list[int] = []

    def fake_fit(row, seed, split, feats, epochs, patience, valid_every=1, overrides=None, **kw):  # type: ignore[no-untyped-def]
        fits.append((overrides, kw.get("trainer_overrides")))
        rec = {"library": "attnrec", "model": row, "seed": seed, "best_epoch": 7, "test": {}}
        if overrides:
            rec["overrides"] = overrides
        if kw.get("trainer_overrides"):
            rec["trainer_overrides"] = kw["trainer_overrides"]
        return rec

    def fake_cornac(folder, name, mods, seed, epochs, *a, **kw):  # type: ignore[no-untyped-def]
        cornac_epochs.append(epochs)
        return {"library": "cornac", "model": "VBPR", "seed": seed}

    fake_data(bench, monkeypatch)
    monkeypatch.setattr(bench, "fit_ours", fake_fit)
    monkeypatch.setattr(bench, "cornac_row", fake_cornac)
    out = tmp_path / "r.jsonl"
    variant = {"library": "attnrec", "model": "vbpr", "seed": 0, "trainer_overrides": {"adam_eps": 1e-12}}
    out.write_text(json.dumps({**variant, "best_epoch": 3}) + "\n")

    def run(*argv: str) -> None:
        run_main(bench, monkeypatch, out, *argv)

    run("--peers", "cornac")  # the protocol's row is fitted; Cornac gets its best epoch, not the variant's 3
    assert fits == [(None, None)] and cornac_epochs == [7]
    run("--peers", "", "--trainer-set", "adam_eps=1e-12")  # the variant on file: not fitted again
    run("--peers", "", "--set", "reg=0")  # another variant: fitted, once
    run("--peers", "", "--set", "reg=0")
    assert fits == [(None, None), ({"reg": 0}, None)]
    assert [bench.variant_of(r) for r in bench._records(out)][-1] == ({"reg": 0}, {}, "raw")


def test_cornac_raw_features_are_a_row_of_their_own(bench, monkeypatch, tmp_path, capsys):  # type: ignore[no-untyped-def]
    """--cornac-features raw: Cornac's VBPR runs with normalized=False beside the protocol's (min-max) record on
    file, once, at our vbpr's best epoch; the record says so and the report keeps it apart."""
    calls: list[tuple[int, bool]] = []
    test = {"recall@10": 0.1, "recall@20": 0.2, "ndcg@10": 0.05, "ndcg@20": 0.06}

    def fake_run(folder, name, seed, features, *, epochs, reg, out, normalized=True, timeout=0):  # type: ignore[no-untyped-def]
        calls.append((epochs, normalized))
        np.save(out, np.zeros((2, 2), np.float32))  # the score matrix the driver leaves for our evaluator
        return {"library": "cornac", "model": "VBPR", "seed": seed, "normalized": normalized}

    fake_data(bench, monkeypatch)
    monkeypatch.setattr(bench, "run_cornac_vbpr", fake_run)
    monkeypatch.setattr(bench, "evaluate_full_ranking", lambda *a, **k: test)
    out = tmp_path / "r.jsonl"
    ours = {"library": "attnrec", "model": "vbpr", "seed": 0, "best_epoch": 7, "test": test}
    protocol = {"library": "cornac", "model": "VBPR", "seed": 0, "test": test}  # written before the option
    out.write_text(json.dumps(ours) + "\n" + json.dumps(protocol) + "\n")

    def run(*argv: str) -> None:
        run_main(bench, monkeypatch, out, *argv)

    run("--peers", "cornac")  # the protocol's Cornac row is on file: nothing runs
    assert calls == []
    run("--peers", "cornac", "--cornac-features", "raw")
    run("--peers", "cornac", "--cornac-features", "raw")  # resumed: not run twice
    assert calls == [(7, False)]
    assert not list(tmp_path.glob("cornac_scores_*"))  # the score matrix is deleted once evaluated
    assert bench._records(out)[-1]["normalized"] is False
    capsys.readouterr()
    bench.report(out)
    labels = [ln.split(" | ")[1] for ln in capsys.readouterr().out.splitlines() if ln.startswith("| cornac")]
    assert labels == ["VBPR", "VBPR cornac_features=raw"]


def test_cornac_features_are_refused_without_the_cornac_row(bench, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(
        bench, "load", lambda *a: (_ for _ in ()).throw(AssertionError("the data were loaded"))
    )
    for argv in (["--peers", "mmrec"], ["--peers", "cornac", "--models", "bpr"]):
        monkeypatch.setattr("sys.argv", ["bench_multimodal.py", "--cornac-features", "raw", *argv])
        with pytest.raises(SystemExit):
            bench.main()
        assert "--cornac-features changes Cornac's VBPR row" in capsys.readouterr().err


def test_minmax_scaling_is_cornacs_over_the_concatenated_modalities(bench):  # type: ignore[no-untyped-def]
    """Cornac min-max scales the one matrix our driver gives it (the modalities side by side): one min and one max
    over every entry, not one per modality or per column."""
    text = np.array([[-0.5, 0.5], [0.25, 1.5]], np.float32)
    meta = np.array([[0.0, 2.0], [4.0, 2.0]], np.float32)
    out = bench.minmax_scaled({"text": text, "meta": meta})
    joined = np.hstack([text, meta])
    np.testing.assert_allclose(np.hstack([out["text"], out["meta"]]), (joined + 0.5) / 4.5, rtol=1e-6)
    np.testing.assert_allclose(out["text"], [[0.0, 2 / 9], [1 / 6, 4 / 9]], rtol=1e-6)
    assert out["text"].dtype == np.float32
    # differences between items shrink by 1/(max - min): the scale Cornac's VBPR sees
    np.testing.assert_allclose(out["meta"][0] - out["meta"][1], (meta[0] - meta[1]) / 4.5, rtol=1e-6)
    with pytest.raises(bench.DataError, match="every entry of text, meta is 1.0"):
        bench.minmax_scaled({"text": np.ones((3, 2), np.float32), "meta": np.ones((3, 1), np.float32)})


def test_item_features_minmax_reaches_our_fit_only_and_is_a_variant(  # type: ignore[no-untyped-def]
    bench, monkeypatch, tmp_path, capsys
):
    """--item-features minmax: our rows are fitted on the scaled features, the export stays raw, the record is kept
    apart from the protocol's (resume and report), and peers are refused beside it."""
    raw = {"text": np.array([[0.0, 2.0], [1.0, 4.0]], np.float32)}
    before = raw["text"].copy()
    fitted: list[np.ndarray] = []
    exported: list[np.ndarray] = []
    test = {"recall@10": 0.1, "recall@20": 0.2, "ndcg@10": 0.05, "ndcg@20": 0.06}

    def fake_fit(row, seed, split, feats, *a, **kw):  # type: ignore[no-untyped-def]
        fitted.append(feats["text"])
        return {"library": "attnrec", "model": row, "seed": seed, "best_epoch": 7, "test": test}

    fake_data(bench, monkeypatch, raw, exported)
    monkeypatch.setattr(bench, "fit_ours", fake_fit)
    out = tmp_path / "r.jsonl"
    out.write_text(
        json.dumps({"library": "attnrec", "model": "vbpr", "seed": 0, "best_epoch": 9, "test": test}) + "\n"
    )

    def run(*argv: str) -> None:
        run_main(bench, monkeypatch, out, "--peers", "", *argv)

    run()  # the protocol's row is on file
    assert fitted == []
    run("--item-features", "minmax")
    run("--item-features", "minmax")  # resumed: fitted once
    assert len(fitted) == 1
    np.testing.assert_allclose(fitted[0], [[0.0, 0.5], [0.25, 1.0]])
    assert len(exported) == 3 and all(np.array_equal(x, before) for x in exported)  # the files stay raw
    assert bench.variant_of(bench._records(out)[-1]) == ({}, {}, "minmax")
    capsys.readouterr()
    bench.report(out)
    labels = [ln.split(" | ")[1] for ln in capsys.readouterr().out.splitlines() if ln.startswith("| attnrec")]
    assert labels == ["vbpr", "vbpr item_features=minmax"]
    monkeypatch.setattr(
        bench, "load", lambda *a: (_ for _ in ()).throw(AssertionError("the data were loaded"))
    )
    monkeypatch.setattr(
        "sys.argv",
        [*("bench_multimodal.py", "--item-features", "minmax", "--peers", "cornac"), "--out", str(out)],
    )
    with pytest.raises(SystemExit):
        bench.main()
    assert "change our rows only" in capsys.readouterr().err


def test_cornac_driver_gets_the_scaling_flag(bench, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """run_cornac_vbpr hands ``normalized`` to the driver's ImageModality (the subprocess call captured)."""
    import sys

    peer = sys.modules["mm_peer_mmrec"]  # imported by bench_multimodal
    cmds: list[list[str]] = []

    class Done:
        returncode = 0
        stdout = json.dumps({"fit_s": 2.0})
        stderr = ""

    def fake_run(cmd, **kw):  # type: ignore[no-untyped-def]
        cmds.append(cmd)
        assert kw["timeout"] == 5.0  # --peer-timeout's value reaches the subprocess
        return Done()

    monkeypatch.setattr(peer.subprocess, "run", fake_run)
    for normalized in (False, True):
        rec = bench.run_cornac_vbpr(
            tmp_path,
            "x",
            0,
            ["text_feat.npy"],
            epochs=2,
            reg=1e-4,
            out=tmp_path / "s.npy",
            normalized=normalized,
            timeout=5.0,
        )
        assert json.loads(cmds[-1][-1])["normalized"] is normalized and rec["normalized"] is normalized
    assert "ImageModality(features=feats, ids=ids, normalized=a['normalized'])" in cmds[-1][2]


def test_a_failed_raw_cornac_run_is_its_variants_failure(bench, monkeypatch, tmp_path, capsys):  # type: ignore[no-untyped-def]
    """A failed --cornac-features raw run is recorded as that variant (not retried on resume, not blocking the
    protocol's Cornac row, reported under its label)."""
    calls: list[bool] = []
    test = {"recall@10": 0.1, "recall@20": 0.2, "ndcg@10": 0.05, "ndcg@20": 0.06}

    def fake_run(folder, name, seed, features, *, epochs, reg, out, normalized=True, timeout=0):  # type: ignore[no-untyped-def]
        calls.append(normalized)
        if not normalized:
            raise RuntimeError("cornac broke")
        np.save(out, np.zeros((2, 2), np.float32))
        return {"library": "cornac", "model": "VBPR", "seed": seed, "normalized": normalized}

    fake_data(bench, monkeypatch)
    monkeypatch.setattr(bench, "run_cornac_vbpr", fake_run)
    monkeypatch.setattr(bench, "evaluate_full_ranking", lambda *a, **k: test)
    out = tmp_path / "r.jsonl"
    out.write_text(
        json.dumps({"library": "attnrec", "model": "vbpr", "seed": 0, "best_epoch": 7, "test": test}) + "\n"
    )

    def run(*argv: str) -> None:
        run_main(bench, monkeypatch, out, "--peers", "cornac", *argv)

    run("--cornac-features", "raw")
    assert bench._records(out)[-1]["failed"] and bench._records(out)[-1]["normalized"] is False
    run("--cornac-features", "raw")  # on file (failed): not retried
    run()  # the protocol's Cornac row still runs
    assert calls == [False, True]
    capsys.readouterr()
    bench.report(out)
    assert "cornac VBPR cornac_features=raw failed: seed 0" in capsys.readouterr().out


def test_peer_timeout_reaches_mmrec_and_failures_rerun_only_when_asked(  # type: ignore[no-untyped-def]
    bench, monkeypatch, tmp_path
):
    """--peer-timeout is MMRec's subprocess limit; a failure on file (a timeout) is done unless --retry-failed."""
    seen: list[float] = []

    def fake_mmrec(model, folder, name, seed, **kw):  # type: ignore[no-untyped-def]
        seen.append(kw["timeout"])
        test = {"recall@10": 0.1, "recall@20": 0.2, "ndcg@10": 0.05, "ndcg@20": 0.06}
        return {"library": "mmrec", "model": model, "seed": seed, "test": test}

    fake_data(bench, monkeypatch)
    monkeypatch.setattr(bench, "run_mmrec", fake_mmrec)
    out = tmp_path / "r.jsonl"
    out.write_text(
        json.dumps({"library": "mmrec", "model": "MMGCN", "seed": 0, "failed": "TimeoutExpired"}) + "\n"
    )
    run_main(bench, monkeypatch, out, "--models", "mmrec:MMGCN", "--peers", "mmrec", "--peer-timeout", "9000")
    assert seen == []  # the failure counts as done
    run_main(
        bench,
        monkeypatch,
        out,
        "--models",
        "mmrec:MMGCN",
        "--peers",
        "mmrec",
        "--peer-timeout",
        "9000",
        "--retry-failed",
    )
    run_main(bench, monkeypatch, out, "--models", "mmrec:MMGCN", "--peers", "mmrec", "--retry-failed")
    assert seen == [9000.0]  # run once, with the given limit; then its success is on file
    rows = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: rows.append(" ".join(map(str, a))))
    bench.report(out)
    assert not any("failed" in line for line in rows)  # the retried failure is superseded in the report

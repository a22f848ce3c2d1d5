"""The fresh probe of issue 13: inputs of the table's kinds that the other robustness files do not use, each of which
was a crash, an unclear error or a silent wrong result when a new user tried it, and is now a clean outcome.

Every probe here goes through the real CLI in-process (the ``cli`` fixture, with its hang watchdog) or the library
call the CLI makes. The full probe log, with the probes that already answered well, is in the hardening notes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from attnrec.cli_common import error_message
from attnrec.errors import DataError
from attnrec.experiments.config import RunConfig
from attnrec.experiments.run import run_experiment
from attnrec.serving.bundle import bundle_extra, load_bundle, load_bundle_items, resave_hint, save_bundle

from .conftest import Probe, assert_clean_error, assert_nothing_partial, assert_ok

HEADER = "user_id,item_id,rating,timestamp\n"
# 6 users x 5 items of 8, ratings 1-5: every user and item in train, a few items unseen by each user
ROWS = [f"u{u},{(u + 2 * j) % 8},{(u * 3 + j) % 5 + 1},{10 * u + j}\n" for u in range(6) for j in range(5)]


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="module")
def svd_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An svd run on the rows above with a declared 1-5 scale and item titles (library-built: fast)."""
    root = tmp_path_factory.mktemp("fresh-svd")
    data = _write(root / "r.csv", HEADER + "".join(ROWS))
    items = _write(root / "items.csv", "item_id,title\n" + "".join(f"{i},Item {i}\n" for i in range(8)))
    cfg = RunConfig.parse(
        {
            "model": "svd",
            "train": data,
            "test": data,
            "items": items,
            "rating_range": [1, 5],
            "out": root / "run",
        }
    )
    run_experiment(cfg, progress=False)
    return root / "run" / "model"


# ------------------------------------------------------------------------------------------ data files
@pytest.mark.parametrize(
    ("name", "body", "fragments"),
    [
        # an unclosed quote on the last line: Polars' ten-line message with advice on schema inference, no line
        ("unclosed.csv", HEADER + ROWS[0] + 'u1,"3,4,9\n', (":3", "malformed quoting", "4 fields")),
        # a space after a closing quote
        ("space_after_quote.csv", HEADER + ROWS[0] + 'u1,"3" ,4,9\n', (":3", "malformed quoting")),
        # a quoted file with one record of 5 fields, two lines below a blank one
        ("quoted_ragged.csv", HEADER + '"u0",1,2,3\n\n"u1",1,2,3,4\n', (":4", "found 5")),
    ],
)
def test_a_malformed_quoted_csv_is_one_line_naming_the_line(
    name: str, body: str, fragments: tuple[str, ...], tmp_path: Path, cli: Callable[..., Probe]
) -> None:
    path = _write(tmp_path / name, body)
    line = assert_clean_error(cli(["data", "info", path]), name, *fragments)
    assert "infer_schema_length" not in line and "\n" not in line


def test_a_malformed_item_metadata_file_names_its_line(
    svd_run: Path, tmp_path: Path, cli: Callable[..., Probe]
) -> None:
    data = svd_run.parent.parent / "r.csv"
    items = _write(tmp_path / "items.csv", 'item_id,title,description\n0,"A","fine"\n1,"B","space after" \n')
    probe = cli(
        [
            "train",
            "--model",
            "pop",
            "--train",
            data,
            "--test",
            data,
            "--items",
            items,
            "--out",
            tmp_path / "run",
        ]
    )
    line = assert_clean_error(probe, "items.csv:3", "malformed quoting")
    assert "infer_schema_length" not in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["csv", "parquet", "items"])
def test_a_column_named_line_is_refused_by_name(
    kind: str, svd_run: Path, tmp_path: Path, cli: Callable[..., Probe]
) -> None:
    """``line`` is the readers' line-number column: a file column of that name was a Polars DuplicateError."""
    if kind == "csv":
        path = _write(tmp_path / "with_line.csv", "user_id,item_id,rating,line\n" + "u1,2,3,7\nu2,3,4,8\n")
        probe = cli(["data", "info", path])
    elif kind == "parquet":
        path = tmp_path / "with_line.parquet"
        pl.DataFrame({"user_id": ["u1"], "item_id": ["2"], "line": [7]}).write_parquet(path)
        probe = cli(["data", "info", path])
    else:
        data = svd_run.parent.parent / "r.csv"
        path = _write(tmp_path / "with_line.csv", "item_id,title,line\n0,A,1\n")
        out = tmp_path / "run"
        probe = cli(
            ["train", "--model", "pop", "--train", data, "--test", data, "--items", path, "--out", out]
        )
    assert_clean_error(probe, "with_line", "field 'line'", "rename")


# ------------------------------------------------------------------------------------------ values
def test_a_user_with_every_item_is_named_by_id_before_pairwise_training(
    tmp_path: Path, cli: Callable[..., Probe]
) -> None:
    """BPR has no negative for a user who took every item: the error named the internal index 1 (no such user in
    the file; the user is 'b') from inside the first epoch. Now: the file's id, before the fit."""
    rows = ["a,1,4,1\n", "b,1,4,2\n", "b,2,4,3\n", "b,3,4,4\n", "c,2,4,5\n", "a,3,3,6\n"]
    data = _write(tmp_path / "full.csv", HEADER + "".join(rows))
    probe = cli(
        ["train", "--model", "bpr", "--train", data, "--test", data, "--epochs", "1", "--out", tmp_path / "r"]
    )
    line = assert_clean_error(probe, "field 'user_id'", "'b'", "every item")
    assert "epoch" not in probe.err.lower()
    assert "value 1:" not in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("message", "clean"),
    [
        (
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 80000000000 bytes. Error code 12 (Cannot allocate memory)",
            True,
        ),
        ("CUDA out of memory. Tried to allocate 20.00 GiB", True),
        ("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)", False),  # a bug keeps its traceback
    ],
)
def test_torch_running_out_of_memory_is_one_line(message: str, clean: bool) -> None:
    """``--set dim=1000000000`` made torch raise RuntimeError('... can't allocate memory ...'): a traceback."""
    line = error_message(RuntimeError(message))
    if not clean:
        assert line is None
        return
    assert line is not None and line.startswith("out of memory:") and "--set dim" in line and "\n" not in line


# ------------------------------------------------------------------------------------------ bundles
def _downgrade_to_format_1(bundle: Path) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    del m["files"]
    (bundle / "manifest.json").write_text(json.dumps({**m, "format": 1}))


def test_a_bundle_rewritten_as_format_1_is_refused_unless_trusted(
    svd_run: Path, tmp_path: Path, cli: Callable[..., Probe]
) -> None:
    """Format 1 has no checksums: anyone who could rewrite a bundle could downgrade it and edit its files freely.
    Untrusted it is refused with how to re-save it; trusted it loads; the re-saved copy is format 2 and checked."""
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(svd_run, bundle)
    _downgrade_to_format_1(bundle)
    users = json.loads((bundle / "users.json").read_text())
    users["ids"][0], users["ids"][1] = users["ids"][1], users["ids"][0]  # an edit no checksum can now see
    (bundle / "users.json").write_text(json.dumps(users))
    args = ["recommend", "--model-dir", bundle, "--users", "u1", "--k", "2"]
    line = assert_clean_error(
        cli(args), "manifest.json", "field 'format'", "value 1", "no checksums", "re-save"
    )
    assert "--trust-bundle" in line and "trust_code=True" in line
    with pytest.raises(DataError, match="no checksums"):
        load_bundle_items(bundle)
    assert_ok(cli([*args, "--trust-bundle"]))
    assert resave_hint(bundle) in line
    resaved = save_bundle(
        load_bundle(bundle, trust_code=True),
        tmp_path / "resaved",
        items=load_bundle_items(bundle, trust_code=True),
        extra=bundle_extra(bundle),
    )
    assert json.loads((resaved / "manifest.json").read_text())["format"] == 2
    assert load_bundle_items(resaved) is not None
    assert_ok(cli(["recommend", "--model-dir", resaved, "--users", "u1", "--k", "2"]))


# ------------------------------------------------------------------------------------------ results
def test_recommend_shows_the_clipped_rating_beside_the_ranking_score(
    svd_run: Path, tmp_path: Path, cli: Callable[..., Probe]
) -> None:
    """svd's ``score`` is its unclipped prediction (the ranking); ``predicted_rating`` is it clipped to 1-5."""
    model = load_bundle(svd_run)
    lo, hi = model.rating_range
    assert (lo, hi) == (1.0, 5.0)
    # a new user who rated two items 5: the fold-in pushes the best unseen items past the top of the scale
    from attnrec.models.query import History, Query

    hist = History.from_lists([model.item_vocab.lookup(["0", "2"])], values=[[5.0, 5.0]])
    recs = model.recommend(Query(history=hist), k=6)
    scores, ratings = recs["score"].to_numpy(), recs["predicted_rating"].to_numpy()
    np.testing.assert_allclose(ratings, np.clip(scores, 1.0, 5.0), rtol=1e-6)
    assert ratings.max() <= 5.0 and ratings.min() >= 1.0
    # for known users the column is what predict() gives for the same pairs
    known = model.recommend(["u1", "u2"], k=3)
    users = model.user_vocab.lookup(known["user_id"])
    items = model.item_vocab.lookup(known["item_id"])
    np.testing.assert_allclose(known["predicted_rating"].to_numpy(), model.predict(users, items), rtol=1e-5)
    # the CLI prints it, and --all-users files carry it
    probe = cli(["recommend", "--model-dir", svd_run, "--users", "u1", "--k", "2"])
    assert_ok(probe)
    assert "predicted_rating" in probe.out
    out = tmp_path / "all.csv"
    assert_ok(cli(["recommend", "--model-dir", svd_run, "--all-users", "--out", out, "--k", "2"]))
    frame = pl.read_csv(out)
    assert frame["predicted_rating"].max() <= 5.0 and frame.height == 12
    assert_nothing_partial(tmp_path)


def test_a_ranking_model_has_no_predicted_rating(tmp_path: Path) -> None:
    data = _write(tmp_path / "r.csv", HEADER + "".join(ROWS))
    run_experiment(
        RunConfig.parse({"model": "pop", "train": data, "test": data, "out": tmp_path / "run"}),
        progress=False,
    )
    recs = load_bundle(tmp_path / "run" / "model").recommend(["u1"], k=2)
    assert recs.columns == ["row", "user_id", "rank", "item_id", "score"]


# ------------------------------------------------------------------------------------------ flags
@pytest.mark.parametrize("command", ["recommend", "train"])
def test_more_threads_than_cpus_is_refused_before_any_work(
    command: str, svd_run: Path, tmp_path: Path, cli: Callable[..., Probe]
) -> None:
    """``--threads 100000`` had torch start that many threads; Polars then could not start one and its runtime
    panicked into a segfault (signal 11)."""
    data = svd_run.parent.parent / "r.csv"
    if command == "recommend":
        args: list[str | Path] = ["recommend", "--model-dir", svd_run, "--users", "u1", "--threads", "100000"]
    else:
        args = ["train", "--model", "pop", "--train", data, "--test", data, "--out", tmp_path / "r"]
        args += ["--threads", "100000"]
    assert_clean_error(cli(args), "threads 100000", "expected 1 to")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("name", "fmt"), [("recs.json", None), ("recs", None), ("recs.PARQUET", "parquet")])
def test_recommend_out_writes_the_format_its_name_says(
    name: str, fmt: str | None, svd_run: Path, tmp_path: Path, cli: Callable[..., Probe]
) -> None:
    """``--out recs.json`` (or no suffix) was written as CSV under that name, and ``recs.PARQUET`` as CSV too."""
    out = tmp_path / name
    probe = cli(["recommend", "--model-dir", svd_run, "--users", "u1", "--k", "2", "--out", out])
    if fmt is None:
        assert_clean_error(probe, name, ".csv or .parquet")
        assert not out.exists()
        return
    assert_ok(probe)
    assert pl.read_parquet(out).height == 2


def test_a_columns_mapping_onto_a_name_the_file_has_is_one_line(
    svd_run: Path, cli: Callable[..., Probe]
) -> None:
    """``--columns user_id=item_id`` on a file with both columns was a Polars DuplicateError traceback."""
    data = svd_run.parent.parent / "r.csv"
    probe = cli(["evaluate", "--model-dir", svd_run, "--test", data, "--columns", "user_id=item_id"])
    assert_clean_error(probe, "r.csv", "field 'item_id'", "'user_id' is mapped to 'item_id'")


def test_evaluating_on_pairs_that_are_all_masked_is_an_error_not_zeros(
    tmp_path: Path, cli: Callable[..., Probe]
) -> None:
    """The training file as --test, or --test also given to --exclude, printed a table of zeros with exit 0."""
    rows = ROWS[::2], ROWS[1::2]
    train, test = (
        _write(tmp_path / f"{n}.csv", HEADER + "".join(r))
        for n, r in zip(("train", "test"), rows, strict=True)
    )
    run_experiment(
        RunConfig.parse({"model": "pop", "train": train, "test": test, "out": tmp_path / "r"}), progress=False
    )
    bundle = tmp_path / "r" / "model"
    line = assert_clean_error(
        cli(["evaluate", "--model-dir", bundle, "--test", train]), "train.csv", "every one of its 15"
    )
    assert "--exclude" in line
    assert_clean_error(
        cli(["evaluate", "--model-dir", bundle, "--test", test, "--exclude", test]), "every one of its"
    )
    # some masked: scored, with a warning that counts them
    mixed = _write(tmp_path / "mixed.csv", HEADER + "".join(rows[1]) + rows[0][0])
    probe = cli(["evaluate", "--model-dir", bundle, "--test", mixed])
    assert_ok(probe)
    assert "1 of 16 held-out pairs" in " ".join(probe.out.split())


def test_a_run_file_saved_with_a_byte_order_mark_reads(tmp_path: Path, cli: Callable[..., Probe]) -> None:
    """A run file from Notepad (UTF-8 with a BOM) was 'invalid TOML: Invalid statement (line 1, column 1)'."""
    data = _write(tmp_path / "r.csv", HEADER + "".join(ROWS))
    text = f'model = "pop"\ntrain = "{data}"\ntest = "{data}"\nout = "{tmp_path / "run"}"\n'
    cfg = _write(tmp_path / "run.toml", b"\xef\xbb\xbf" + text.encode())
    assert_ok(cli(["train", "--config", cfg]))
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_data_split_flags_and_its_own_input(tmp_path: Path, cli: Callable[..., Probe]) -> None:
    """``--dedup bogus`` listed every policy but the default 'none'; splitting a split's train.csv into its own
    folder overwrote that input (and the old split) with exit 0."""
    data = _write(tmp_path / "r.csv", HEADER + "".join(ROWS))
    assert_clean_error(
        cli(["data", "split", data, "--out", tmp_path / "s", "--dedup", "bogus"]), "none, last"
    )
    assert not (tmp_path / "s").exists()
    assert_ok(cli(["data", "split", data, "--out", tmp_path / "s", "--ratios", "0.6,0.2,0.2"]))
    before = (tmp_path / "s" / "train.csv").read_bytes()
    probe = cli(["data", "split", tmp_path / "s" / "train.csv", "--out", tmp_path / "s"])
    assert_clean_error(probe, "overwrite its own input")
    assert (tmp_path / "s" / "train.csv").read_bytes() == before


def test_item_titles_print_as_text_never_as_terminal_commands(
    tmp_path: Path, cli: Callable[..., Probe], caplog: pytest.LogCaptureFixture
) -> None:
    """Titles from --items (or a bundle someone hands you) reached the terminal raw: an ESC colour sequence, an
    OSC window-title command, a right-to-left override; HTML entities stayed entities; a repeated id was silent."""
    data = _write(tmp_path / "r.csv", HEADER + "".join(ROWS))
    titles = [
        "\x1b[31mRED\x1b]0;pwned\x07",
        "&lt;b&gt;Bold&lt;/b&gt; &amp; co",
        "\u202eevil",
        "D",
        "E",
        "F",
        "G",
        "H",
    ]
    body = "".join(f'{i},"{t}"\n' for i, t in enumerate(titles)) + '0,"again"\n'
    items = _write(tmp_path / "items.csv", "item_id,title\n" + body)
    out = tmp_path / "run"
    probe = cli(["train", "--model", "pop", "--train", data, "--test", data, "--items", items, "--out", out])
    assert_ok(probe)
    assert "1 item id(s) appear on more than one row (e.g. '0' on lines 2, 10)" in caplog.text
    probe = cli(["recommend", "--model-dir", out / "model", "--history", "7", "--k", "8", "--include-seen"])
    assert_ok(probe)
    assert "\x1b" not in probe.out and "\x07" not in probe.out and "\u202e" not in probe.out
    assert "\\x1b[31mRED" in probe.out and "\\u202eevil" in probe.out
    assert "Bold & co" in probe.out and "&lt;" not in probe.out


@pytest.mark.parametrize(
    ("header", "fragments"),
    [
        ("label,a,label\n1,x,1\n", (":1", "appears twice", "'label'")),
        ("label,line\n1,x\n0,y\n", (":1", "'line'")),
    ],
)
def test_ctr_csv_headers_that_collide_are_one_line(
    header: str, fragments: tuple[str, ...], tmp_path: Path, cli: Callable[..., Probe]
) -> None:
    """A repeated CTR column was Polars' 'more fields than defined in Schema' on line 2 with advice to truncate
    ragged lines; a column named 'line' was a DuplicateError traceback."""
    data = _write(tmp_path / "ctr.csv", header)
    args = [
        "train",
        "--model",
        "lr",
        "--format",
        "csv",
        "--train",
        data,
        "--test",
        data,
        "--out",
        tmp_path / "r",
    ]
    line = assert_clean_error(cli(args), "ctr.csv", *fragments)
    assert "truncate_ragged_lines" not in line


def test_library_calls_with_a_wrong_type_are_clean_errors(svd_run: Path, tmp_path: Path) -> None:
    """``recommend(ids, k=2.5)`` was torch's TypeError from topk; ``read_table(path, sep="")`` a bare ValueError."""
    from attnrec.data.readers.tabular import read_table
    from attnrec.errors import ConfigError

    model = load_bundle(svd_run)
    for k in (2.5, True, "3"):
        with pytest.raises(ConfigError, match=r"k must be >= 1 \(an integer\)"):
            model.recommend(["u1"], k=k)  # type: ignore[arg-type]
    assert model.recommend(["u1"], k=np.int64(2)).height == 2
    with pytest.raises(ConfigError, match="separator is empty"):
        read_table(svd_run.parent.parent / "r.csv", sep="")

"""The CLI as a new user meets it: every subcommand with missing options, wrong types, missing paths and a folder
where a file is expected answers with one clean line; out-of-range flags are refused; OS-level failures are one
line while a genuine bug keeps its traceback; nothing the user typed is eaten as Rich markup."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

import attnrec.data.registry as registry
from attnrec.cli_common import error_message, print_frame
from attnrec.errors import ConfigError
from attnrec.experiments.run import RunConfig, run_experiment

from .conftest import assert_clean_error, assert_nothing_partial, assert_ok
from .test_runs import ml  # noqa: F401 - the tiny MovieLens folder, shared


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory, ml: Path) -> dict[str, Path]:  # noqa: F811
    """A pop bundle, a folder, a file, a non-UTF-8 file and a missing path."""
    d = tmp_path_factory.mktemp("cli-flags")
    run_experiment(RunConfig.parse({"model": "pop", "data": str(ml), "out": str(d / "run")}), progress=False)
    (d / "folder").mkdir()
    (d / "file.txt").write_text("1\n")
    (d / "latin1.txt").write_bytes(b"\xff\xfe1\n")
    return {
        "ml": ml,
        "bundle": d / "run" / "model",
        "folder": d / "folder",
        "file": d / "file.txt",
        "latin1": d / "latin1.txt",
        "missing": d / "missing.csv",
    }


# (arguments with {placeholders}, fragments the one error line must name)
NEW_USER = [
    (["train"], ["--model"]),
    (["train", "--model", "pop"], ["data"]),
    (["train", "--model", "pop", "--data", "{missing}"], ["missing.csv"]),
    (["train", "--model", "pop", "--data", "{folder}"], ["folder"]),
    (["train", "--model", "pop", "--train", "{folder}", "--test", "{folder}"], ["folder", "regular file"]),
    (["train", "--model", "pop", "--data", "{ml}", "--epochs", "two"], ["--epochs"]),
    (["train", "--config", "{missing}"], ["missing.csv"]),
    (["train", "--config", "{folder}"], ["folder"]),
    (["train", "--config", "{latin1}"], ["latin1.txt", "UTF-8"]),
    (["train", "--model", "[red]x[/red]", "--data", "{ml}"], ["'[red]x[/red]'"]),
    (["evaluate"], ["--model-dir"]),
    (["evaluate", "--model-dir", "{missing}", "--test", "{file}"], ["missing.csv"]),
    (["evaluate", "--model-dir", "{file}", "--test", "{file}"], ["file.txt", "bundle"]),
    (["evaluate", "--model-dir", "{bundle}", "--test", "{folder}"], ["folder"]),
    (["evaluate", "--model-dir", "{bundle}", "--test", "{missing}"], ["missing.csv"]),
    (["evaluate", "--model-dir", "{bundle}", "--test", "{latin1}"], ["latin1.txt"]),
    (["evaluate", "--model-dir", "{bundle}", "--test", "{file}", "--k", "0"], ["--k"]),
    (["evaluate", "--model-dir", "{bundle}", "--test", "{file}", "--k", "-5"], ["--k"]),
    (["predict"], ["--model-dir"]),
    (["predict", "--model-dir", "{bundle}", "--data", "{file}"], ["pop", "does neither"]),
    (["predict", "--model-dir", "{folder}", "--data", "{file}"], ["folder", "manifest.json"]),
    (["recommend"], ["--model-dir"]),
    (["recommend", "--model-dir", "{bundle}"], ["no users given"]),
    (["recommend", "--model-dir", "{missing}", "--users", "1"], ["missing.csv"]),
    (["recommend", "--model-dir", "{bundle}", "--users-file", "{folder}"], ["folder"]),
    (["recommend", "--model-dir", "{bundle}", "--users-file", "{missing}"], ["missing.csv"]),
    (["recommend", "--model-dir", "{bundle}", "--users-file", "{latin1}"], ["latin1.txt:1"]),
    (["recommend", "--model-dir", "{bundle}", "--users", "1", "--k", "ten"], ["--k"]),
    (["recommend", "--model-dir", "{bundle}", "--users", "1", "--k", "0"], ["--k"]),
    (["recommend", "--model-dir", "{bundle}", "--users", "1", "--k", "-5"], ["--k"]),
    (
        ["recommend", "--model-dir", "{bundle}", "--query", "x", "--candidates", "2", "--k", "5"],
        ["--candidates 2", "--k 5"],
    ),
    (["recommend", "--model-dir", "{bundle}", "--query", "x", "--candidates", "-1"], ["--candidates"]),
    (
        ["recommend", "--model-dir", "{bundle}", "--users", "1", "--out", "{folder}"],
        ["folder", "is a folder"],
    ),
    (
        ["recommend", "--model-dir", "{bundle}", "--users", "1", "--out", "{file}/x.csv"],
        ["file.txt", "is a file"],
    ),
    (["recommend", "--model-dir", "{bundle}", "--users", "[bold]nobody[/bold]"], ["'[bold]nobody[/bold]'"]),
    (["data", "info"], ["source"]),
    (["data", "info", "{missing}"], ["missing.csv"]),
    (["data", "info", "{folder}"], ["folder"]),
    (["data", "info", "{latin1}"], ["latin1.txt"]),
    (["data", "info", "{ml}", "--on-bad-lines", "ignore"], ["--on-bad-lines"]),
    (["data", "split", "{ml}"], ["--out"]),
    (["data", "split", "{ml}", "--out", "{file}"], ["file.txt", "is a file"]),
    (["data", "split", "{ml}", "--out", "{folder}/s", "--method", "nope"], ["nope"]),
    (["data", "split", "{ml}", "--out", "{folder}/s", "--ratios", "a,b"], ["--ratios"]),
    (["data", "split", "{ml}", "--out", "{folder}/s", "--ratios", "nan,0.1,0.1"], ["nan, 0.1, 0.1"]),
    (["data", "split", "{ml}", "--out", "{folder}/s", "--seed", "x"], ["--seed"]),
    (["data", "fetch"], ["name"]),
    (["data", "fetch", "no-such-dataset"], ["no-such-dataset"]),
    (["data", "fetch", "ml-100k", "--home", "{file}"], ["file.txt"]),
    (["demo", "--out", "{file}"], ["file.txt", "is a file"]),
    (["models", "--bogus"], ["--bogus"]),
    (["train", "--model", "pop", "--data", "{ml}", "--out", ""], ["--out", "empty path"]),
    (["data", "split", "{ml}", "--out", " "], ["--out", "empty path"]),
    (["recommend", "--model-dir", "{bundle}", "--users", "1", "--out", ""], ["--out", "empty path"]),
    (["demo", "--out", ""], ["--out", "empty path"]),
]


@pytest.mark.parametrize(("args", "fragments"), NEW_USER, ids=[" ".join(a) for a, _ in NEW_USER])
def test_a_new_users_mistake_is_one_clean_line(cli, place, args, fragments) -> None:
    names = {k: str(v) for k, v in place.items()}
    probe = cli([a.format(**names) for a in args])
    assert_clean_error(probe, *fragments)
    assert probe.code == 2


@pytest.mark.parametrize(
    "command", [["demo"], ["train"], ["evaluate"], ["recommend"], ["predict"], ["data", "split"]]
)
def test_help_works_for_every_command(cli, command) -> None:
    probe = cli([*command, "--help"])
    assert_ok(probe)
    assert "Usage" in probe.out


def test_recommend_out_into_missing_folders_is_written_whole(cli, place, tmp_path) -> None:
    out = tmp_path / "a" / "b" / "recs.csv"
    assert_ok(cli(["recommend", "--model-dir", place["bundle"], "--users", "1", "--k", "3", "--out", out]))
    assert pl.read_csv(out).height == 3
    assert_nothing_partial(tmp_path)


def test_a_failed_recommend_creates_no_folder(cli, place, tmp_path) -> None:
    out = tmp_path / "a" / "recs.csv"
    assert_clean_error(cli(["recommend", "--model-dir", place["bundle"], "--users", "nobody", "--out", out]))
    assert not (tmp_path / "a").exists()


# ------------------------------------------------------------------------------------------------ error classes
def raising(exc: BaseException):  # noqa: ANN201 - a stand-in for load_dataset
    def load(*args: object, **kwargs: object) -> None:
        raise exc

    return load


@pytest.mark.parametrize(
    ("exc", "fragments"),
    [
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/u.csv"),
            ["/data/u.csv", "No such file"],
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/data/u.csv"),
            ["/data/u.csv", "Permission denied"],
        ),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/data"), ["/data", "Is a directory"]),
        (FileNotFoundError("No such file or directory (os error 2): x.csv"), ["x.csv"]),  # polars' form
        (OSError(errno.ENOSPC, "No space left on device"), ["No space left on device", "ATTNREC_DEBUG"]),
        (
            UnicodeDecodeError("utf-8", b"ab\xff", 2, 3, "invalid start byte"),
            ["not utf-8", "0xff", "offset 2"],
        ),
        (MemoryError(), ["out of memory"]),
        (ConfigError("a [bold]marked[/bold] value [1, 2]"), ["a [bold]marked[/bold] value [1, 2]"]),
    ],
)
def test_os_level_failures_are_one_line(cli, monkeypatch, exc, fragments) -> None:
    monkeypatch.setattr(registry, "load_dataset", raising(exc))
    probe = cli(["data", "info", "anything"])
    assert_clean_error(probe, *fragments)
    assert probe.code == 2


@pytest.mark.parametrize(
    "exc", [KeyError("user_id"), ZeroDivisionError(), OSError(errno.EBADF, "Bad file descriptor")]
)
def test_a_genuine_bug_keeps_its_traceback(cli, monkeypatch, exc) -> None:
    monkeypatch.setattr(registry, "load_dataset", raising(exc))
    probe = cli(["data", "info", "anything"])
    assert probe.crash is not None and type(exc).__name__ in probe.crash
    assert error_message(exc) is None


def test_attnrec_debug_shows_every_traceback(cli, monkeypatch) -> None:
    monkeypatch.setattr(registry, "load_dataset", raising(ConfigError("bad")))
    monkeypatch.setenv("ATTNREC_DEBUG", "1")
    probe = cli(["data", "info", "anything"])
    assert probe.crash is not None and "ConfigError: bad" in probe.crash
    monkeypatch.setenv("ATTNREC_DEBUG", "0")
    assert_clean_error(cli(["data", "info", "anything"]), "bad")


def test_ctrl_c_is_one_line_and_status_130(cli, monkeypatch) -> None:
    monkeypatch.setattr(registry, "load_dataset", raising(KeyboardInterrupt()))
    probe = cli(["data", "info", "anything"])
    assert probe.crash is None and probe.code == 130
    assert probe.err.strip() == "interrupted"


def test_result_tables_print_brackets_as_they_are() -> None:
    buf = io.StringIO()
    frame = pl.DataFrame({"item_id": ["[1]"], "title": ["[REC] [/b]"], "score": [1.5]})
    print_frame(Console(file=buf, width=120), frame, "top-1 for [bold]me[/bold]")
    text = buf.getvalue()
    for shown in ("[1]", "[REC] [/b]", "top-1 for [bold]me[/bold]"):
        assert shown in text


def test_error_message_names_both_paths_of_a_rename() -> None:
    exc = OSError(errno.EXDEV, "Invalid cross-device link", "/a/x.tmp", None, "/b/x")
    assert error_message(exc) == "/a/x.tmp -> /b/x: Invalid cross-device link"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads anything")
def test_an_unreadable_users_file_is_one_line(cli, place, tmp_path) -> None:
    f = tmp_path / "users.txt"
    f.write_text("1\n")
    f.chmod(0)
    assert_clean_error(cli(["recommend", "--model-dir", place["bundle"], "--users-file", f]), "users.txt")


def test_a_full_disk_during_data_split_leaves_no_part_of_the_split(cli, place, tmp_path, monkeypatch) -> None:
    out = tmp_path / "split"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    real = Path.write_text

    def no_room_for_the_report(self: Path, text: str, *a: object, **kw: object) -> int:
        if self.name == "split.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, text, *a, **kw)

    monkeypatch.setattr(Path, "write_text", no_room_for_the_report)
    probe = cli(["data", "split", place["ml"], "--out", out])
    assert_clean_error(probe, str(out), "no space left on device")
    assert sorted(p.name for p in out.iterdir()) == ["notes.md"]  # no train.csv without its split.json
    assert_nothing_partial(tmp_path)
    monkeypatch.setattr(Path, "write_text", real)
    assert_ok(cli(["data", "split", place["ml"], "--out", out]))
    assert sorted(p.name for p in out.iterdir()) == [
        "notes.md",
        "split.json",
        "test.csv",
        "train.csv",
        "valid.csv",
    ]


# ------------------------------------------------------------------------------------------------ CTR rows
@pytest.fixture(scope="module")
def ctr_bundle(tmp_path_factory: pytest.TempPathFactory, ml: Path) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("ctr") / "run"
    cfg = {"model": "lr", "data": str(ml), "out": str(out), "trainer": {"epochs": 1}}
    run_experiment(RunConfig.parse(cfg), progress=False)
    return out / "model"


@pytest.mark.parametrize(
    ("data", "extra", "fragments"),
    [
        ("{missing}", [], ["missing.csv"]),
        ("{folder}", [], ["folder", "regular file"]),
        ("{latin1}", [], ["latin1.txt:1", "utf-8"]),
        ("{rows}", ["--sep", ";;"], ["--sep", "';;'"]),
        ("{rows}", ["--sep", "é"], ["--sep", "'é'"]),
        ("{rows}", ["--format", "nope"], ["--format"]),
    ],
)
def test_predict_on_bad_ctr_rows_is_one_line(
    cli, place, ctr_bundle, tmp_path, data, extra, fragments
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("user,item,genres,year\n1,2,Comedy,1995\n")
    names = {**{k: str(v) for k, v in place.items()}, "rows": str(rows)}
    args = ["predict", "--model-dir", ctr_bundle, "--data", data.format(**names), "--format", "csv", *extra]
    assert_clean_error(cli(args), *fragments)


def test_predict_reads_unlabelled_ctr_rows(cli, ctr_bundle, tmp_path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("user,item,genres,year\n1,2,Comedy,1995\n3,4,Drama,1990\n")
    out = tmp_path / "p.csv"
    assert_ok(cli(["predict", "--model-dir", ctr_bundle, "--data", rows, "--format", "csv", "--out", out]))
    probs = pl.read_csv(out)["probability"]
    assert probs.len() == 2 and bool(((probs > 0) & (probs < 1)).all())


def test_a_top_k_larger_than_what_can_be_ranked_says_so(cli, place) -> None:
    probe = cli(["recommend", "--model-dir", place["bundle"], "--users", "1", "--k", "500"])
    assert_ok(probe)
    assert "fewer than the 500 asked (k=500)" in probe.out
    quiet = cli(["recommend", "--model-dir", place["bundle"], "--users", "1", "--k", "3"])
    assert_ok(quiet)
    assert "fewer than" not in quiet.out


def test_data_split_into_the_current_folder_and_a_failed_one_leaves_no_folder(
    cli, place, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_ok(cli(["data", "split", place["ml"], "--out", "."]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.json", "test.csv", "train.csv", "valid.csv"]

    def no_room(self: Path, *a: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pl.DataFrame, "write_csv", no_room)
    assert_clean_error(cli(["data", "split", place["ml"], "--out", tmp_path / "new" / "s"]), "no space left")
    assert not (tmp_path / "new").exists()


def test_demo_with_its_default_out_reaches_the_demo(cli, monkeypatch, tmp_path) -> None:
    """`attnrec demo` with no options: its default --out (a Path) goes through the --out parser to the demo."""
    import attnrec.experiments.demo as demo

    seen: dict[str, object] = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "run_demo", lambda out, **kw: seen.update(out=out, user=kw["user"]))
    assert_ok(cli(["demo"]))
    assert seen == {"out": Path("runs/demo"), "user": "1"}

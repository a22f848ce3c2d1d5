"""Runs: the output location is checked before any work, every result is written whole or not at all (a full disk
leaves nothing half-written and never a metrics.json without its model), a second run on a locked folder fails at
once naming the holder, and trainer flags a model ignores are refused instead of recorded."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

import attnrec.experiments.run as run_mod
import attnrec.serving.bundle as bundle_mod
import attnrec.training.trainer as trainer_mod
from attnrec.paths import LOCK_NAME, DirLock

from .conftest import assert_clean_error, assert_nothing_partial, assert_ok, cli_process


@pytest.fixture(scope="module")
def ml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MovieLens-100k-format folder: 30 users x 20 items, about 240 ratings."""
    d = tmp_path_factory.mktemp("ml-runs")
    rng = np.random.default_rng(0)
    rows = [
        f"{u}\t{i}\t{5 if u % 2 == i % 2 else 1}\t{880000000 + u * 100 + i}"
        for u in range(1, 31)
        for i in range(1, 21)
        if rng.random() < 0.4
    ]
    (d / "u.data").write_text("\n".join(rows) + "\n")
    return d


def train(ml: Path, out: Path | str, *extra: str) -> list[str | Path]:
    return ["train", "--data", ml, "--out", out, "--no-progress", *extra]


SVD = ["--model", "svd", "--set", "factors=4", "--set", "iterations=3", "--set", "patience=3"]


@pytest.fixture
def no_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading any input is a failure: the probe must stop before it."""

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read before the check")

    monkeypatch.setattr(run_mod, "prepare_data", fail)
    monkeypatch.setattr(run_mod, "prepare_ctr", fail)


def enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ------------------------------------------------------------------------------------------------ the location
def test_out_that_is_a_file_fails_before_any_work(cli, ml, tmp_path, no_data) -> None:
    target = tmp_path / "results"
    target.write_text("not a folder")
    assert_clean_error(cli(train(ml, target, "--model", "pop")), str(target), "is a file")
    assert target.read_text() == "not a folder"


def test_out_under_a_file_fails_before_any_work(cli, ml, tmp_path, no_data) -> None:
    (tmp_path / "f").write_text("x")
    target = tmp_path / "f" / "run"
    assert_clean_error(cli(train(ml, target, "--model", "pop")), str(target), "is a file")


def test_out_in_missing_folders_is_created(cli, ml, tmp_path) -> None:
    out = tmp_path / "a" / "b" / "run"
    assert_ok(cli(train(ml, out, "--model", "pop")))
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "metrics.json",
        "model",
        "train_log.jsonl",
    ]
    assert_nothing_partial(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: no permission to take away")
def test_out_not_writable_fails_before_any_work(cli, ml, tmp_path, no_data) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_clean_error(cli(train(ml, locked / "run", "--model", "pop")), "not writable")
    finally:
        locked.chmod(0o700)


def test_a_failed_run_leaves_no_folder_it_created(cli, ml, tmp_path) -> None:
    out = tmp_path / "new" / "run"
    probe = cli(train(ml, out, "--model", "pop", "--items", tmp_path / "missing.csv"))
    assert_clean_error(probe, "missing.csv")
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------------ a full disk
def test_full_disk_mid_bundle_leaves_no_metrics_and_no_partial_bundle(cli, ml, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    written: list[str] = []
    real = Path.write_bytes

    def fills_after_one(self: Path, data: bytes) -> int:  # the disk fills after the bundle's first file
        if written:
            enospc()
        written.append(self.name)
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", fills_after_one)
    probe = cli(train(ml, out, *SVD))
    monkeypatch.setattr(Path, "write_bytes", real)
    assert_clean_error(probe, str(out / "model"), "model bundle", "no space left on device")
    assert written, "the bundle was never being written: the probe tested nothing"
    assert not (out / "metrics.json").exists() and not (out / "model").exists()
    assert_nothing_partial(tmp_path)
    # the fit is not lost: its checkpoint lets --resume write the results without refitting
    log = (out / "train_log.jsonl").read_text()
    assert_ok(cli([*train(ml, out, *SVD), "--resume"]))
    assert (out / "model" / "manifest.json").is_file() and (out / "metrics.json").is_file()
    assert (out / "train_log.jsonl").read_text() == log
    assert not (out / LOCK_NAME).exists()


def test_full_disk_on_a_checkpoint_mid_fit_is_one_error_and_nothing_partial(
    cli, ml, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "run"
    calls: list[Path] = []
    real = torch.save

    def fills_on_second(obj: object, f: Path, *a: object, **kw: object) -> None:
        calls.append(Path(f))
        if len(calls) == 2:
            # what a real full disk leaves: a partial temporary file
            Path(f).write_bytes(b"half a checkpoint")
            enospc()
        real(obj, f, *a, **kw)

    monkeypatch.setattr(trainer_mod.torch, "save", fills_on_second)
    probe = cli(train(ml, out, *SVD))
    assert_clean_error(probe, "checkpoint.pt", "no space left on device")
    assert len(calls) == 2
    assert not (out / "metrics.json").exists() and not (out / "model").exists()
    assert_nothing_partial(tmp_path)
    # the checkpoint of epoch 1 is intact, and the log says exactly what it holds
    saved = torch.load(out / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert json.loads(saved["state"])["epoch"] == 1
    assert [json.loads(x)["epoch"] for x in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2]


def test_full_disk_on_metrics_leaves_the_previous_state(cli, ml, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    real = Path.write_text

    def no_room_for_metrics(self: Path, text: str, *a: object, **kw: object) -> int:
        if ".metrics.json." in self.name:
            enospc()
        return real(self, text, *a, **kw)

    monkeypatch.setattr(Path, "write_text", no_room_for_metrics)
    assert_clean_error(cli(train(ml, out, "--model", "pop")), "metrics.json", "no space left on device")
    assert not (out / "metrics.json").exists()
    # a model without metrics, never metrics without a model
    assert (out / "model" / "manifest.json").is_file()
    assert_nothing_partial(tmp_path)


def test_the_bundle_is_renamed_into_place_whole(ml, tmp_path, monkeypatch) -> None:
    """At no moment does ``model/`` exist without its manifest: save_bundle writes into a temporary folder."""
    seen: list[tuple[str, bool]] = []
    real = bundle_mod.save_bundle

    def spy(model: object, path: Path, **kw: object) -> Path:
        seen.append((Path(path).name, (tmp_path / "run" / "model").exists()))
        return real(model, path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(run_mod, "save_bundle", spy)
    cfg = run_mod.RunConfig.parse({"model": "pop", "data": str(ml), "out": str(tmp_path / "run")})
    run_mod.run_experiment(cfg, progress=False)
    ((name, existed),) = seen
    assert name.endswith(".tmp") and not existed
    assert (tmp_path / "run" / "model" / "manifest.json").is_file()
    assert_nothing_partial(tmp_path)


# ------------------------------------------------------------------------------------------------ the lock
def test_a_second_run_on_a_locked_folder_fails_fast_naming_the_holder(ml, tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with DirLock(out):  # this test process is the first run
        t0 = time.monotonic()
        probe = cli_process(train(ml, out, "--model", "pop"), timeout=60)
        assert_clean_error(probe, str(out), f"pid {os.getpid()}", "in use")
        assert time.monotonic() - t0 < 60
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the second run wrote nothing
    assert not (out / LOCK_NAME).exists()


@contextmanager
def lock_held_by_another_process(folder: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process that takes ``folder``'s DirLock and holds it until killed (by ``kill -9`` on exit)."""
    code = f"from attnrec.paths import DirLock; DirLock({str(folder)!r}).acquire(); print('locked', flush=True); input()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()  # kill -9: the kernel drops its flock; the lock file stays behind, naming a dead pid
        holder.wait()


def test_a_lock_left_by_a_killed_run_is_taken(cli, ml, tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with lock_held_by_another_process(out) as holder:
        assert_clean_error(cli(train(ml, out, "--model", "pop")), f"pid {holder.pid}")
    assert (out / LOCK_NAME).exists()
    assert_ok(cli(train(ml, out, "--model", "pop")))
    assert not (out / LOCK_NAME).exists()


def test_a_run_whose_checkpoints_go_into_out_itself_takes_the_lock_twice(cli, ml, tmp_path) -> None:
    out = tmp_path / "run"
    assert_ok(cli([*train(ml, out, "--model", "pop"), "--trainer-set", f"checkpoint_dir={out}"]))
    assert (out / "checkpoint.pt").is_file() and not (out / LOCK_NAME).exists()


def test_the_lock_is_released_when_a_run_fails(cli, ml, tmp_path) -> None:
    out = tmp_path / "run"
    assert_clean_error(cli(train(ml, out, "--model", "pop", "--set", "nope=1")), "nope")
    assert not (out / LOCK_NAME).exists()
    assert_ok(cli(train(ml, out, "--model", "pop")))


# ------------------------------------------------------------------------------------------------ ignored flags
@pytest.mark.parametrize(
    ("model", "flags", "field"),
    [
        (SVD, ["--lr", "0.5"], "lr"),
        (SVD, ["--batch-size", "64"], "batch_size"),
        (SVD, ["--trainer-set", "optimizer=sgd"], "optimizer"),
        (SVD, ["--epochs", "9"], "epochs"),
        (["--model", "pop"], ["--lr", "0.5"], "lr"),
        (["--model", "pop"], ["--epochs", "5"], "epochs"),
        (["--model", "pop"], ["--trainer-set", "patience=2"], "patience"),
        (["--model", "pop"], ["--device", "cuda"], "device"),
    ],
)
def test_flags_a_model_ignores_are_refused_before_any_work(
    cli, ml, tmp_path, no_data, model, flags, field
) -> None:
    out = tmp_path / "run"
    assert_clean_error(cli(train(ml, out, *model, *flags)), f"'{field}'", "not used")
    assert not out.exists()


def test_flags_a_model_reads_are_recorded(cli, ml, tmp_path) -> None:
    out = tmp_path / "run"
    sgd = ["--model", "svd", "--set", "solver=sgd", "--set", "factors=4", "--epochs", "2", "--lr", "0.02"]
    assert_ok(cli(train(ml, out, *sgd, "--batch-size", "512")))
    trainer = json.loads((out / "metrics.json").read_text())["trainer"]
    assert (trainer["lr"], trainer["epochs"], trainer["batch_size"]) == (0.02, 2, 512)


def test_a_run_file_trainer_table_is_checked_too(cli, ml, tmp_path, no_data) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'model = "pop"\ndata = "{ml}"\n[trainer]\nlr = 0.1\n')
    assert_clean_error(cli(["train", "--config", cfg, "--out", tmp_path / "run"]), "'lr'", "not used")


@pytest.mark.parametrize(
    ("device", "fragment"), [("cuda", "no CUDA"), ("cuda:0", "no CUDA"), ("mps", "MPS"), ("tpu", "device")]
)
def test_a_device_that_is_not_there_fails_before_the_data_is_read(
    cli, ml, tmp_path, no_data, monkeypatch, device, fragment
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    probe = cli(train(ml, tmp_path / "run", "--model", "bpr", "--epochs", "1", "--device", device))
    assert_clean_error(probe, "device", fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_index_past_the_last_device_is_refused(cli, ml, tmp_path, no_data) -> None:
    probe = cli(
        train(ml, tmp_path / "run", "--model", "bpr", "--device", f"cuda:{torch.cuda.device_count()}")
    )
    assert_clean_error(probe, "device", "CUDA device(s)")


@pytest.mark.parametrize("field", ["checkpoint_dir", "log_path"])
def test_a_trainer_path_under_a_file_fails_before_any_work(cli, ml, tmp_path, no_data, field) -> None:
    (tmp_path / "f").write_text("x")
    probe = cli([*train(ml, tmp_path / "run", "--model", "pop"), "--trainer-set", f"{field}={tmp_path}/f/x"])
    assert_clean_error(probe, field, "is a file")
    assert not (tmp_path / "run").exists()


def test_a_fit_locks_its_checkpoint_folder_outside_a_run(ml, tmp_path) -> None:
    """The Python API too: a second fit writing the same checkpoints fails at once, naming the holder."""
    from attnrec.data.registry import load_dataset
    from attnrec.data.table import Interactions
    from attnrec.data.vocab import Vocabulary
    from attnrec.errors import OutputError
    from attnrec.models.topk.pop import Pop

    df = load_dataset(str(ml)).interactions
    data, _ = Interactions.encode(
        df, Vocabulary.from_ids(df["user_id"], kind="user"), Vocabulary.from_ids(df["item_id"], kind="item")
    )
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    trainer = trainer_mod.TrainerConfig(checkpoint_dir=ckpt, progress=False, epochs=1)
    with lock_held_by_another_process(ckpt) as holder:
        with pytest.raises(OutputError, match=rf"{ckpt} is in use .*pid {holder.pid}"):
            Pop().fit(data, trainer=trainer)
    assert not (ckpt / "checkpoint.pt").exists()
    Pop().fit(data, trainer=trainer)  # free again
    assert (ckpt / "checkpoint.pt").is_file() and not (ckpt / LOCK_NAME).exists()


def test_what_a_killed_write_left_is_a_run_and_is_cleared_by_overwrite(cli, ml, tmp_path) -> None:
    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)
    (out / ".metrics.json.999.tmp").write_text("{")  # a run killed while writing its metrics
    (out / ".model.999.tmp").mkdir()  # ... or its bundle
    assert_clean_error(cli(train(ml, out, "--model", "pop")), "already holds a run", ".metrics.json.999.tmp")
    assert_ok(cli([*train(ml, out, "--model", "pop"), "--overwrite"]))
    assert_nothing_partial(out)
    assert (out / "metrics.json").is_file()


def test_the_lock_nests_in_one_thread_and_refuses_another(tmp_path) -> None:
    import threading

    from attnrec.errors import OutputError

    refused: list[str] = []

    def other_thread() -> None:
        try:
            DirLock(tmp_path).acquire()
        except OutputError as exc:
            refused.append(str(exc))

    with DirLock(tmp_path):
        with DirLock(tmp_path):
            pass
        assert (tmp_path / LOCK_NAME).exists()  # the inner release leaves the outer lock held
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert len(refused) == 1 and f"pid {os.getpid()}" in refused[0]
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_file_that_cannot_be_written_leaves_no_lock_held(tmp_path, monkeypatch) -> None:
    from attnrec.errors import OutputError

    real_write, calls = os.write, []

    def full_disk_once(fd: int, data: bytes) -> int:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk_once)
    with pytest.raises(OutputError, match="cannot write the run's lock file") as err:
        DirLock(tmp_path).acquire()
    assert str(tmp_path / LOCK_NAME) in str(err.value)
    monkeypatch.undo()
    with DirLock(tmp_path):  # the failed attempt let go of the lock (a leaked descriptor would still hold it)
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / LOCK_NAME).exists()

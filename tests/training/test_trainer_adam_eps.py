"""TrainerConfig.adam_eps: Adam's / AdamW's ε reaches the optimiser; with ε / B a batch-mean loss takes the steps of
the same loss summed over the batch at ε (the property the option exists for); other optimisers refuse it; the
default stays out of a checkpoint's identity (older checkpoints resume) and another value is another run."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from attnrec.errors import ConfigError
from attnrec.experiments.run import RunConfig, trainer_config
from attnrec.models.topk.bpr import BPR
from attnrec.testing import checkerboard
from attnrec.training.trainer import SGDSolver, Trainer, TrainerConfig


def _solver(**kw):  # type: ignore[no-untyped-def]
    train, _, _ = checkerboard()
    model = BPR(dim=8, seed=0)
    module = model.build_module(train)
    trainer = Trainer(TrainerConfig(lr=0.01, device="cpu", progress=False, **kw))
    return SGDSolver(trainer, module, lambda epoch, g: model.train_batches(train, epoch, g, 64)), module


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_the_optimiser_gets_the_eps(optimizer):
    default, _ = _solver(optimizer=optimizer)
    assert default.optimizer.defaults["eps"] == 1e-8  # PyTorch's: runs before the option are unchanged
    set_, _ = _solver(optimizer=optimizer, adam_eps=1e-12)
    assert set_.optimizer.defaults["eps"] == 1e-12


def test_eps_over_batch_size_turns_a_mean_loss_into_the_summed_loss_steps():
    batch = 64
    mean_solver, mean_module = _solver(adam_eps=1e-8 / batch)
    sum_params = {n: p.detach().clone().requires_grad_() for n, p in mean_module.named_parameters()}
    sum_opt = torch.optim.Adam(list(sum_params.values()), lr=0.01, eps=1e-8)
    rng = np.random.default_rng(0)
    for _ in range(5):
        for n, p in mean_module.named_parameters():  # tiny per-row gradients, where ε matters
            g = torch.from_numpy(rng.normal(scale=1e-7, size=tuple(p.shape)).astype(np.float32))
            p.grad = g.clone()
            sum_params[n].grad = g * batch  # the summed loss: B times the mean's gradient
        mean_solver.optimizer.step()
        sum_opt.step()
    for n, p in mean_module.named_parameters():
        torch.testing.assert_close(p.detach(), sum_params[n].detach(), rtol=1e-5, atol=1e-7)
    # and the default ε does not: the check above can fail
    plain, plain_module = _solver()
    for p in plain_module.parameters():
        p.grad = torch.full_like(p, 1e-7)
    before = [p.detach().clone() for p in plain_module.parameters()]
    plain.optimizer.step()
    step = max(
        float((p.detach() - b).abs().max()) for p, b in zip(plain_module.parameters(), before, strict=True)
    )
    assert step < 0.01 * 0.95  # ε = 1e-8 against |g| = 1e-7 shortens Adam's first step (lr · g / (|g| + ε))


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_another_optimiser_refuses_it(optimizer):
    with pytest.raises(ValidationError, match="adam_eps=1e-06 is Adam's"):
        TrainerConfig(optimizer=optimizer, adam_eps=1e-6)
    assert TrainerConfig(optimizer=optimizer).adam_eps == 1e-8


def test_a_run_files_error_names_the_field():
    run = RunConfig(model="bpr", data="x", trainer={"optimizer": "sgd", "adam_eps": 1e-6})
    with pytest.raises(ConfigError, match=r"trainer field 'adam_eps': .*optimizer 'sgd' does not read it"):
        trainer_config(run, BPR, progress=False)


def test_checkpoint_identity(tmp_path):
    # the default is left out of the identity (checkpoints written before the option stay resumable) ...
    assert "adam_eps" not in Trainer(TrainerConfig()).identity(None)["trainer config"]
    assert Trainer(TrainerConfig(adam_eps=1e-10)).identity(None)["trainer config"]["adam_eps"] == 1e-10
    # ... and a checkpoint of one setting is not resumed under the other
    train, valid, _ = checkerboard()
    kw = {"epochs": 1, "device": "cpu", "progress": False, "checkpoint_dir": tmp_path}
    BPR(dim=4, seed=0).fit(train, valid, trainer=TrainerConfig(**kw))
    with pytest.raises(ConfigError, match="adam_eps"):
        BPR(dim=4, seed=0).fit(train, valid, trainer=TrainerConfig(**kw, adam_eps=1e-10))

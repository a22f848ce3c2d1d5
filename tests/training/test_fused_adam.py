"""The Trainer's Adam / AdamW use torch's fused kernel (one pass per parameter per step instead of about six; issue 19):
the same updates as the default Adam up to float rounding, and the default where the kernel does not apply."""

import numpy as np
import pytest
import torch

from attnrec.models.topk.bpr import BPR
from attnrec.testing import checkerboard
from attnrec.training.trainer import SGDSolver, Trainer, TrainerConfig, fused_adam


def test_fused_only_for_dense_float_parameters():
    dense = [torch.nn.Parameter(torch.zeros(3, 2))]
    assert fused_adam(dense) is True
    assert fused_adam([]) is None
    assert (
        fused_adam([*dense, torch.nn.Parameter(torch.zeros(2, dtype=torch.int64), requires_grad=False)])
        is None
    )


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_the_trainers_adam_is_fused_and_steps_like_the_default(optimizer):
    train, _, _ = checkerboard()
    model = BPR(dim=8, seed=0)
    module = model.build_module(train)
    trainer = Trainer(
        TrainerConfig(optimizer=optimizer, lr=0.01, weight_decay=0.01, device="cpu", progress=False)
    )
    solver = SGDSolver(trainer, module, lambda epoch, g: model.train_batches(train, epoch, g, 64))
    assert solver.optimizer.defaults["fused"] is True
    # the same five steps with torch's default (single-tensor) optimizer on a copy of the weights
    reference = {n: p.detach().clone().requires_grad_() for n, p in module.named_parameters()}
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    ref_opt = cls(list(reference.values()), lr=0.01, weight_decay=0.01, foreach=False)
    rng = np.random.default_rng(0)
    for _ in range(5):
        grads = {
            n: torch.from_numpy(rng.normal(size=tuple(p.shape)).astype(np.float32))
            for n, p in reference.items()
        }
        for n, p in module.named_parameters():
            p.grad = grads[n].clone()
            reference[n].grad = grads[n].clone()
        solver.optimizer.step()
        ref_opt.step()
    for n, p in module.named_parameters():
        torch.testing.assert_close(p.detach(), reference[n].detach(), rtol=1e-5, atol=1e-6)


def test_resuming_an_unfused_checkpoint_keeps_the_fused_kernel():
    train, _, _ = checkerboard()
    model = BPR(dim=8, seed=0)
    module = model.build_module(train)
    trainer = Trainer(TrainerConfig(lr=0.01, device="cpu", progress=False))
    solver = SGDSolver(trainer, module, lambda epoch, g: model.train_batches(train, epoch, g, 64))
    old = torch.optim.Adam(list(module.parameters()), lr=0.01)  # what a checkpoint before the kernel holds
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    old.step()
    solver.load_state_dict({"optimizer": old.state_dict()})
    assert [g["fused"] for g in solver.optimizer.param_groups] == [True]
    solver.optimizer.step()  # the loaded moments step on the fused kernel
    assert all(torch.isfinite(p).all() for p in module.parameters())

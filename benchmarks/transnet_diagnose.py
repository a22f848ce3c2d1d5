"""Why does TransNet's source network predict a near-constant rating? Per-epoch measurements on one exported split.

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/transnet_diagnose.py --dataset musical \
        --epochs 6 [--set key=value ...] [--lr 0.008]

Trains ``transnet`` (its own config, overridable with ``--set``) with a plain loop that mirrors the Trainer's
(Adam, lr decayed by 0.99 per epoch, batch 128, the module's summed loss) and prints after every epoch, as one JSON
line: the three losses on the training rows (a fixed sample, eval mode) and the source and target MSE on
validation; the spread (std) of the source's and the target's predictions; how saturated the tanh outputs are
(mean |x|, share of |x| > 0.95) and how much x_T and z_L vary across rows (mean per-feature std); the mean
gradient norm of each part (target CNN + FM_T, source towers + transform, FM_S) over the epoch. Validation and
test rows carry no text (``strip_text``); the target network's validation MSE reads the valid reviews from the
split file only for this diagnosis (never in a fitted model).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
SPLITS = Path("bench_results") / "review-splits"


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="musical")
    ap.add_argument("--split-root", type=Path, default=SPLITS)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=0.008)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="transnet config field=value (JSON value)")
    args = ap.parse_args()

    from attnrec.data.reviews import ReviewBatch, tokenize
    from attnrec.data.side import ReviewCorpus, SideInputs, strip_text
    from attnrec.experiments.run import RunConfig, prepare_data
    from attnrec.models.review.transnet import TransNet, TransNetModule

    torch.set_num_threads(1)
    files = {p: args.split_root / args.dataset / f"{p}.csv" for p in ("train", "valid", "test")}
    d = prepare_data(
        RunConfig(model="svd", train=files["train"], valid=files["valid"], test=files["test"]),
        implicit=False,
        progress=False,
    )
    params = dict(kv.split("=", 1) for kv in args.set)
    model = TransNet(seed=args.seed, **{k: _parse_value(v) for k, v in params.items()})
    print(json.dumps({"config": model.config.model_dump()}), flush=True)

    class Stop(Exception):
        pass

    def loop(module: TransNetModule, *_: Any, **__: Any) -> Any:
        model.module = module
        train = d.train
        opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=args.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.99)
        gen = torch.Generator().manual_seed(args.seed)
        users = torch.tensor(train.users, dtype=torch.int64)
        items = torch.tensor(train.items, dtype=torch.int64)
        ratings = torch.tensor(train.ratings, dtype=torch.float32)
        sample = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:2048]
        assert model.vocab is not None
        v_rev = torch.from_numpy(
            model.vocab.encode(tokenize(d.valid.frame["review"].fill_null("")), model.config.review_length)
        ).long()
        v_r = torch.tensor(d.valid.ratings, dtype=torch.float32)
        parts = {
            "target": [*module.target_net.parameters(), *module.fm_target.parameters()],
            "source": [
                *module.user_net.parameters(),
                *module.item_net.parameters(),
                *module.transform.parameters(),
            ],
            "fm_s": list(module.fm_source.parameters()),
        }
        for epoch in range(args.epochs + 1):
            t0 = time.perf_counter()
            gnorm = {k: 0.0 for k in parts}
            steps = 0
            if epoch > 0:
                module.train()
                order = torch.randperm(len(train), generator=gen)
                for s in range(0, len(order), args.batch):
                    idx = order[s : s + args.batch]
                    loss = module.loss(ReviewBatch(idx, users[idx], items[idx], ratings[idx]))
                    opt.zero_grad()
                    loss.backward()
                    for k, ps in parts.items():
                        g = [p.grad.norm() ** 2 for p in ps if p.grad is not None]
                        gnorm[k] += float(torch.stack(g).sum().sqrt()) if g else 0.0
                    opt.step()
                    steps += 1
                sched.step()
            module.eval()
            with torch.no_grad():
                b = ReviewBatch(sample, users[sample], items[sample], ratings[sample])
                lp = {k: round(float(v), 4) for k, v in module.loss_parts(b).items()}
                x_t = module.target_net(module.target(sample))
                ud, idoc = module.documents(users[sample], items[sample], sample)
                z = module.transformed(module.user_vectors(ud), module.item_vectors(idoc))
                y_t = module.fm_target(x_t)
                y_s = module.fm_source(z)
                vx = module.target_net(v_rev)
                v_t = module.fm_target(vx).clamp(1, 5)
            v_s = torch.from_numpy(model.predict(d.valid.users, d.valid.items))
            row = {
                "epoch": epoch,
                "s": round(time.perf_counter() - t0, 1),
                "train_losses": lp,
                "valid_mse_source": round(float((v_s - v_r).square().mean()), 4),
                "valid_mse_target": round(float((v_t - v_r).square().mean()), 4),
                "valid_mse_mean": round(float((v_r - ratings.mean()).square().mean()), 4),
                "std_pred_source": round(float(y_s.std()), 4),
                "std_pred_source_valid": round(float(v_s.std()), 4),
                "std_pred_target": round(float(y_t.std()), 4),
                "x_t_abs": round(float(x_t.abs().mean()), 3),
                "x_t_sat": round(float((x_t.abs() > 0.95).float().mean()), 3),
                "x_t_rowstd": round(float(x_t.std(0).mean()), 4),
                "z_abs": round(float(z.abs().mean()), 3),
                "z_sat": round(float((z.abs() > 0.95).float().mean()), 3),
                "z_rowstd": round(float(z.std(0).mean()), 4),
                "w0": [
                    round(float(module.fm_target.w0.detach()), 3),
                    round(float(module.fm_source.w0.detach()), 3),
                ],
                "mean_pred": [round(float(y_t.mean()), 3), round(float(y_s.mean()), 3)],
                "grad": {k: round(v / max(1, steps), 4) for k, v in gnorm.items()},
            }
            print(json.dumps(row), flush=True)
        raise Stop

    model.train_module = loop  # type: ignore[method-assign]
    try:
        model.fit(d.train, strip_text(d.valid), side=SideInputs(reviews=ReviewCorpus.from_split(d.train)))
    except Stop:
        pass


if __name__ == "__main__":
    sys.exit(main())

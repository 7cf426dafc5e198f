"""`vgbench bench`: steps per second of the instrumented Lightning run vs a bare loop.

--model mlp (default): both train the same 20x128 sigmoid MLP on mnist1d with SGD, batch
100, one thread, from the same in-memory batches; the bare loop uses vgbench's model.
--model rnn|lstm|gru: the adding task at T = --seq-len (100), width 32, Adam, batch 100; the
bare loop is a plain torch `nn.RNN`/`nn.LSTM`/`nn.GRU` + linear head, what a user would write.
--model transformer: a 4-block pre-LN encoder, d_model 64, on the same task; the bare loop trains
vgbench's own module.
The bare loop has no instruments, no validation and no Lightning; the instrumented run is
`vgbench.train.run` (Lightning, gradient measurements on the log-spaced schedule, divergence
checks, periodic validation), timed over its training loop only. The last line is the ratio.
"""
from __future__ import annotations

import os
import tempfile
import time

import torch


def _timed_loop(cfg, task, net, opt) -> float:
    """Steps per second of a plain PyTorch training loop over the task's in-memory batches."""
    from vgbench.data import Batches
    from vgbench.models import task_loss
    stream = iter(Batches(task.x["train"], task.y["train"], cfg.batch_size, cfg.seed))
    t = time.perf_counter()
    for _ in range(cfg.steps):
        x, y = next(stream)
        loss = task_loss(net(x), y, task.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return cfg.steps / (time.perf_counter() - t)


def bare_loop(cfg) -> float:
    """A plain PyTorch loop on vgbench's own model (no instruments, no Lightning)."""
    from vgbench.data import load_task
    from vgbench.models import build_model
    from vgbench.train import make_optimizer
    task = load_task(cfg)
    net = build_model(cfg, task)
    return _timed_loop(cfg, task, net, make_optimizer(cfg, net.parameters()))


class _BareRecurrent(torch.nn.Module):
    def __init__(self, cfg, task):
        super().__init__()
        kind = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cfg.model]
        self.rnn = kind(task.sample_shape[-1], cfg.width, num_layers=cfg.depth, batch_first=True)
        self.head = torch.nn.Linear(cfg.width, task.n_out)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def bare_recurrent_loop(cfg) -> float:
    """A plain torch nn.RNN/LSTM/GRU training loop (what a user would write) on the same batches."""
    from vgbench.data import load_task
    task = load_task(cfg)
    torch.manual_seed(cfg.seed)
    net = _BareRecurrent(cfg, task)
    return _timed_loop(cfg, task, net, torch.optim.Adam(net.parameters(), lr=cfg.lr))


def instrumented(cfg) -> float:
    from vgbench.train import run
    with tempfile.TemporaryDirectory() as d:
        s = run(cfg, os.path.join(d, "bench"), threads=1)
    return s["steps"] / s["train_s"]


def main(args) -> int:
    from vgbench.config import load
    os.environ["WANDB_MODE"] = "disabled"  # a per-run constant, not a per-step cost
    torch.set_num_threads(1)
    model = getattr(args, "model", "mlp")
    if model == "mlp":
        cfg = load({"task": "mnist1d", "model": "mlp", "depth": args.depth or 20, "width": args.width or 128,
                    "activation": "sigmoid", "optimizer": "sgd", "lr": 0.1, "steps": args.steps,
                    "batch_size": 100})
        what, bare_fn = f"{cfg.depth}x{cfg.width} sigmoid MLP, mnist1d", bare_loop
    elif model == "transformer":
        # the bare loop trains the same module (the "bare training loop of the same module")
        cfg = load({"task": "adding", "model": model, "depth": args.depth or 4,
                    "width": args.width or 64, "heads": 4, "optimizer": "adam", "lr": 0.001, "steps": args.steps,
                    "batch_size": 100,
                    "task_args": {"seq_len": args.seq_len, "n_train": 4000, "n_val": 500, "n_test": 500}})
        what, bare_fn = f"pre-LN transformer, {cfg.depth} blocks, d_model {cfg.width}, adding T = {args.seq_len}", \
            bare_loop
    else:
        cfg = load({"task": "adding", "model": model, "depth": 1, "width": args.width or 32,
                    "optimizer": "adam", "lr": 0.003, "steps": args.steps, "batch_size": 100,
                    "task_args": {"seq_len": args.seq_len, "n_train": 4000, "n_val": 500, "n_test": 500}})
        what, bare_fn = f"{model} width {cfg.width}, adding T = {args.seq_len}", bare_recurrent_loop
    bare, inst = [], []
    for i in range(args.repeats):
        bare.append(bare_fn(cfg))
        inst.append(instrumented(cfg))
        print(f"repeat {i}: bare {bare[-1]:.1f} steps/s, instrumented {inst[-1]:.1f} steps/s", flush=True)
    b, s = max(bare), max(inst)  # best of the repeats: the least disturbed measurement
    print(f"{what}, {cfg.steps} steps, 1 thread")
    print(f"bare PyTorch loop:      {b:.1f} steps/s")
    print(f"vgbench instrumented:   {s:.1f} steps/s")
    print(f"instrumented/bare steps-per-second ratio: {s / b:.2f}")
    return 0

"""`vgbench bench`: steps per second of the instrumented Lightning run vs a bare loop.

Both train the same 20x128 sigmoid MLP on mnist1d with SGD, batch 100, one thread, from
the same in-memory batches. The bare loop has no instruments, no validation and no
Lightning; the instrumented run is `vgbench.train.run` (Lightning, gradient measurements
on the log-spaced schedule, divergence checks every step, periodic validation), timed
over its training loop only. The last line printed is the ratio.
"""
from __future__ import annotations

import os
import tempfile
import time

import torch


def bare_loop(cfg) -> float:
    """Steps per second of a plain PyTorch loop on the same model and batches."""
    from vgbench.data import Batches, load_task
    from vgbench.models import build_model, task_loss
    from vgbench.train import make_optimizer
    task = load_task(cfg)
    net = build_model(cfg, task)
    opt = make_optimizer(cfg, net.parameters())
    stream = iter(Batches(task.x["train"], task.y["train"], cfg.batch_size, cfg.seed))
    t = time.perf_counter()
    for _ in range(cfg.steps):
        x, y = next(stream)
        loss = task_loss(net(x), y, task.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return cfg.steps / (time.perf_counter() - t)


def instrumented(cfg) -> float:
    from vgbench.train import run
    with tempfile.TemporaryDirectory() as d:
        s = run(cfg, os.path.join(d, "bench"), threads=1)
    return s["steps"] / s["train_s"]


def main(args) -> int:
    from vgbench.config import load
    os.environ["WANDB_MODE"] = "disabled"  # a per-run constant, not a per-step cost
    torch.set_num_threads(1)
    cfg = load({"task": "mnist1d", "model": "mlp", "depth": args.depth, "width": args.width,
                "activation": "sigmoid", "optimizer": "sgd", "lr": 0.1, "steps": args.steps,
                "batch_size": 100})
    bare, inst = [], []
    for i in range(args.repeats):
        bare.append(bare_loop(cfg))
        inst.append(instrumented(cfg))
        print(f"repeat {i}: bare {bare[-1]:.1f} steps/s, instrumented {inst[-1]:.1f} steps/s", flush=True)
    b, s = max(bare), max(inst)  # best of the repeats: the least disturbed measurement
    print(f"{cfg.depth}x{cfg.width} sigmoid MLP, mnist1d, {cfg.steps} steps, 1 thread")
    print(f"bare PyTorch loop:      {b:.1f} steps/s")
    print(f"vgbench instrumented:   {s:.1f} steps/s")
    print(f"instrumented/bare steps-per-second ratio: {s / b:.2f}")
    return 0

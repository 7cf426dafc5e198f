"""Tasks: shapes, determinism, and the trivial-predictor baselines stated in the issue."""
import math

import numpy as np
import pytest
import torch

from vgbench.config import load
from vgbench.data import Batches, adding, copy_memory, load_task, temporal_order


def test_adding_constant_predictor_scores_one_sixth():
    x, y = adding(20000, 30, np.random.default_rng(0))
    assert x.shape == (20000, 30, 2)
    assert (x[..., 1].sum(1) == 2).all()
    assert (x[:, :15, 1].sum(1) == 1).all()            # one marker in each half
    assert np.mean((y - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.01)


def test_copy_memory_layout_and_baseline():
    x, y = copy_memory(5, 7, np.random.default_rng(0))
    assert x.shape == (5, 27, 10) and y.shape == (5, 27)
    sym = x.argmax(-1)
    assert (sym[:, 16] == 9).all()                     # delimiter at T + 9
    assert (y[:, -10:] == sym[:, :10]).all() and (y[:, :-10] == 0).all()
    task = load_task(load({"task": "copy", "model": "lstm", "batch_size": 10, "task_args": {"seq_len": 7, "n_train": 10,
                                                                          "n_val": 10, "n_test": 10}}))
    assert task.baseline == pytest.approx(10 * math.log(8) / 27)


def test_temporal_order_classes_balanced_and_determined_by_xy():
    x, y = temporal_order(4000, 100, np.random.default_rng(0))
    assert np.bincount(y).min() > 900
    sym = x.argmax(-1)
    xy = [row[(row == 6) | (row == 7)] for row in sym]
    assert all(len(r) == 2 for r in xy)
    assert all(2 * (r[0] - 6) + (r[1] - 6) == c for r, c in zip(xy, y))


@pytest.mark.parametrize("task,model,shape", [("mnist1d", "mlp", (1, 40)), ("digits", "cnn", (1, 8, 8)),
                                              ("mnist1d_seq", "rnn", (40, 1)), ("digits_seq", "gru", (8, 8))])
def test_shapes_and_splits(task, model, shape):
    t = load_task(load({"task": task, "model": model}))
    assert t.sample_shape == shape and t.n_out == 10
    n = {s: len(t.y[s]) for s in ("train", "val", "test")}
    assert min(n.values()) > 100
    if task.startswith("mnist1d"):
        assert n == {"train": 3500, "val": 500, "test": 1000}


def test_digits_stratified():
    t = load_task(load({"task": "digits"}))
    for s in ("train", "val", "test"):
        frac = torch.bincount(t.y[s], minlength=10).float() / len(t.y[s])
        assert (frac - 0.1).abs().max() < 0.02


def test_deterministic_in_data_seed():
    cfg = {"task": "adding", "model": "rnn", "batch_size": 50, "task_args": {"n_train": 50, "n_val": 5, "n_test": 5}}
    a, b = load_task(load(cfg)), load_task(load(cfg))
    c = load_task(load({**cfg, "data_seed": 1}))
    assert torch.equal(a.x["train"], b.x["train"]) and not torch.equal(a.x["train"], c.x["train"])


def test_batches_cover_epoch_without_repeats():
    x = torch.arange(10.0).view(10, 1)
    it = iter(Batches(x, torch.arange(10), 5, seed=0))
    seen = torch.cat([next(it)[1], next(it)[1]])
    assert sorted(seen.tolist()) == list(range(10))

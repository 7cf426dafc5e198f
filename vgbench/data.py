"""Tasks: in-memory, deterministic train/val/test tensors; nothing is downloaded.

A `Task` holds float32 inputs and targets for the three splits plus what a model and the
metrics need to know about it (input shape, output size, loss kind, the score of a
trivial predictor). Shapes:
  mnist1d      x (N, 1, 40)      y (N,) int64, 10 classes   (Greydanus 2020, `make_dataset`)
  digits       x (N, 1, 8, 8)    y (N,) int64, 10 classes   (scikit-learn's 8x8 digits)
  mnist1d_seq  x (N, 40, 1)      y (N,)                     one value per time step
  digits_seq   x (N, 8, 8)       y (N,)                     one image row per time step
  adding       x (N, T, 2)       y (N,) float32             (Hochreiter & Schmidhuber 1997)
  copy         x (N, T+20, 10)   y (N, T+20) int64          (Arjovsky et al. 2016)
  temporal_order x (N, T, 8)     y (N,) int64, 4 classes    (Hochreiter & Schmidhuber 1997)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from vgbench.config import RunConfig

SPLITS = ("train", "val", "test")


@dataclass
class Task:
    name: str
    x: dict            # split -> float32 tensor
    y: dict            # split -> int64 (classes) or float32 (regression) tensor
    n_out: int         # classes, or 1 for regression
    loss: str          # "xent" | "mse" | "xent_seq" (per-step classification)
    baseline: float    # chance accuracy, or the constant-predictor / memoryless loss
    baseline_metric: str  # the metric `baseline` is stated in: "acc" or "loss"

    @property
    def sample_shape(self) -> tuple:
        return tuple(self.x["train"].shape[1:])

    def to(self, device) -> "Task":
        self.x = {k: v.to(device) for k, v in self.x.items()}
        self.y = {k: v.to(device) for k, v in self.y.items()}
        return self


def _cache_dir() -> Path:
    return Path(os.environ.get("VGBENCH_CACHE", Path.home() / ".cache" / "vgbench"))


@lru_cache(maxsize=4)
def _mnist1d_arrays(num_samples: int):
    """The canonical mnist1d (generation seed 42, 80/20 split), cached on disk: building
    it takes ~3 s. Written atomically so parallel jobs never read half a file."""
    path = _cache_dir() / f"mnist1d_{num_samples}.npz"
    if path.is_file():
        with np.load(path) as d:
            return d["x"], d["y"], d["x_test"], d["y_test"]
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples = num_samples
    d = make_dataset(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
    os.replace(tmp, path)
    return d["x"], d["y"], d["x_test"], d["y_test"]


def _split_val(x, y, n_val: int, rng: np.random.Generator):
    perm = rng.permutation(len(y))
    return (x[perm[n_val:]], y[perm[n_val:]]), (x[perm[:n_val]], y[perm[:n_val]])


def _mnist1d(cfg: RunConfig):
    x, y, xt, yt = _mnist1d_arrays(cfg.task_args["num_samples"])
    rng = np.random.default_rng(cfg.data_seed)
    # 1/8 of the training set as validation: 4000 -> 3500 train / 500 val; test is the
    # canonical 1000.
    (xtr, ytr), (xv, yv) = _split_val(x, y, len(y) // 8, rng)
    return {"train": (xtr, ytr), "val": (xv, yv), "test": (xt, yt)}


def _digits(cfg: RunConfig):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x, y = d.images.astype(np.float32), d.target
    # stratified 60/20/20
    xtr, xrest, ytr, yrest = train_test_split(x, y, test_size=0.4, stratify=y,
                                              random_state=cfg.data_seed)
    xv, xt, yv, yt = train_test_split(xrest, yrest, test_size=0.5, stratify=yrest,
                                      random_state=cfg.data_seed)
    mu, sd = xtr.mean(), xtr.std()  # standardise with training statistics only
    return {"train": ((xtr - mu) / sd, ytr), "val": ((xv - mu) / sd, yv),
            "test": ((xt - mu) / sd, yt)}


def adding(n: int, T: int, rng: np.random.Generator):
    """Adding problem: x[..., 0] ~ U[0,1], x[..., 1] marks one step in each half;
    target = sum of the two marked values. A constant predictor (1.0) has MSE 1/6."""
    vals = rng.random((n, T), dtype=np.float32)
    marks = np.zeros((n, T), dtype=np.float32)
    half = T // 2
    i = rng.integers(0, half, n)
    j = rng.integers(half, T, n)
    marks[np.arange(n), i] = 1.0
    marks[np.arange(n), j] = 1.0
    y = (vals * marks).sum(1).astype(np.float32)
    return np.stack([vals, marks], -1), y


def copy_memory(n: int, T: int, rng: np.random.Generator):
    """Copy memory (Arjovsky et al. 2016): 10 symbols from {1..8}, T-1 blanks (0), the
    delimiter (9), 10 blanks; the target is T+10 blanks then the 10 symbols. Inputs are
    one-hot (10). The memoryless baseline's cross-entropy is 10 ln 8 / (T + 20)."""
    L = T + 20
    seq = rng.integers(1, 9, (n, 10))
    inp = np.zeros((n, L), dtype=np.int64)
    inp[:, :10] = seq
    inp[:, T + 9] = 9
    out = np.zeros((n, L), dtype=np.int64)
    out[:, -10:] = seq
    return np.eye(10, dtype=np.float32)[inp], out


def temporal_order(n: int, T: int, rng: np.random.Generator):
    """Temporal order (Hochreiter & Schmidhuber 1997, exp. 6a): distractors a-d, B at the
    start, E at the end, and X or Y at one step in [0.1T, 0.2T) and one in [0.5T, 0.6T);
    the class is the ordered pair (XX, XY, YX, YY). One-hot over 8 symbols."""
    a, B, E, X = 0, 4, 5, 6  # a..d = 0..3, B, E, X = 6, Y = 7
    sym = rng.integers(a, a + 4, (n, T))
    sym[:, 0], sym[:, -1] = B, E
    t1 = rng.integers(int(0.1 * T), max(int(0.2 * T), int(0.1 * T) + 1), n)
    t2 = rng.integers(int(0.5 * T), max(int(0.6 * T), int(0.5 * T) + 1), n)
    c1, c2 = rng.integers(0, 2, n), rng.integers(0, 2, n)
    sym[np.arange(n), t1] = X + c1
    sym[np.arange(n), t2] = X + c2
    return np.eye(8, dtype=np.float32)[sym], (2 * c1 + c2).astype(np.int64)


GENERATORS = {"adding": adding, "copy": copy_memory, "temporal_order": temporal_order}


def load_task(cfg: RunConfig) -> Task:
    """Build the task of a resolved config (deterministic in cfg.data_seed)."""
    name, a = cfg.task, cfg.task_args
    if name in GENERATORS:
        gen = GENERATORS[name]
        # one stream per split, so changing n_train does not change the test set
        arrays = {s: gen(a[f"n_{s}"], a["seq_len"],
                         np.random.default_rng([cfg.data_seed, i, a["seq_len"]]))
                  for i, s in enumerate(SPLITS)}
    elif name in ("mnist1d", "mnist1d_seq"):
        arrays = _mnist1d(cfg)
    elif name in ("digits", "digits_seq"):
        arrays = _digits(cfg)
    else:  # pragma: no cover - config validation rejects unknown tasks first
        raise ValueError(name)

    x, y = {}, {}
    for s, (xs, ys) in arrays.items():
        xs = torch.as_tensor(np.ascontiguousarray(xs), dtype=torch.float32)
        if name == "mnist1d":
            xs = xs.unsqueeze(1)            # (N, 1, 40): one channel for Conv1d
        elif name == "digits":
            xs = xs.unsqueeze(1)            # (N, 1, 8, 8)
        elif name == "mnist1d_seq":
            xs = xs.unsqueeze(-1)           # (N, 40, 1)
        x[s] = xs
        y[s] = torch.as_tensor(ys, dtype=torch.float32 if name == "adding" else torch.int64)

    if name == "adding":
        return Task(name, x, y, 1, "mse", 1 / 6, "loss")
    if name == "copy":
        T = a["seq_len"]
        return Task(name, x, y, 10, "xent_seq", 10 * math.log(8) / (T + 20), "loss")
    if name == "temporal_order":
        return Task(name, x, y, 4, "xent", 0.25, "acc")
    return Task(name, x, y, 10, "xent", 0.1, "acc")


class Batches:
    """Endless stream of random training batches from in-memory tensors (no DataLoader
    workers): each pass over the data is a fresh permutation from a seeded generator."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        self.x, self.y, self.bs = x, y, min(batch_size, len(y))
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self):
        n = len(self.y)
        while True:
            perm = torch.randperm(n, generator=self.gen).to(self.x.device)
            for i in range(0, n - self.bs + 1, self.bs):
                idx = perm[i:i + self.bs]
                yield self.x[idx], self.y[idx]

"""One instrumented training run, written to a run directory (DESIGN.md's contract).

`run(cfg, out)` trains with PyTorch Lightning (manual optimisation, so that clipping,
divergence checks and gradient measurements happen in one place, between backward and
the optimizer step) from in-memory batches, then writes config.json, metrics.csv,
gradients.parquet and, last and atomically, summary.json.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch import nn

from vgbench import paths
from vgbench.config import RunConfig, config_hash
from vgbench.data import Batches, Task, load_task
from vgbench.instruments import Recorder, ratio_float64, schedule
from vgbench.models import build_model, task_loss
from vgbench.provenance import git_commit, platform_info, versions, write_json_atomic

log = logging.getLogger("vgbench")


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.optimizer == "adam":
        # L2 penalty inside the gradient (torch's Adam weight_decay), same meaning as for SGD
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    momentum = cfg.momentum if cfg.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=cfg.lr, momentum=momentum, weight_decay=cfg.weight_decay)


@torch.no_grad()
def evaluate(net: nn.Module, task: Task, split: str, chunk: int = 2000) -> dict:
    """Loss (mean over examples) and accuracy on a whole split, in eval mode."""
    was_training = net.training
    net.eval()
    x, y = task.x[split], task.y[split]
    loss_sum, correct, count = 0.0, 0.0, 0
    for i in range(0, len(y), chunk):
        xb, yb = x[i:i + chunk], y[i:i + chunk]
        out = net(xb)
        loss_sum += float(task_loss(out, yb, task.loss)) * len(yb)
        if task.loss == "xent":
            correct += float((out.argmax(-1) == yb).sum())
        elif task.loss == "xent_seq":  # accuracy on the 10 recalled symbols
            correct += float((out[:, -10:].argmax(-1) == yb[:, -10:]).float().mean(1).sum())
        count += len(yb)
    net.train(was_training)
    res = {"loss": loss_sum / count}
    if task.loss != "mse":
        res["acc"] = correct / count
    return res


def pretrain_greedy(cfg: RunConfig, net, task: Task, on_layer_done=None) -> dict:
    """Greedy layer-wise autoencoder pretraining (Bengio et al. 2007).

    Layer l is trained as the encoder of an autoencoder of its own input h_{l-1} (computed
    by the already-trained, frozen layers below it), with a linear decoder and MSE, for
    cfg.pretrain_steps steps with the run's optimizer family and lr; only layer l and its
    decoder are in the optimizer. Returns the per-layer reconstruction losses.
    on_layer_done(l, net), if given, is called after layer l's phase (tests use it).
    """
    batches = iter(Batches(task.x["train"], task.y["train"], cfg.batch_size, cfg.seed + 1_000_003))
    layers = []
    for l in range(cfg.depth):
        x0, _ = next(batches)
        with torch.no_grad():
            d_in = net(x0, upto=l).shape[1]
        decoder = nn.Linear(cfg.width, d_in).to(x0.device)
        params = [*net.ops[l].parameters(), *net.norms[l].parameters(),
                  *net.acts[l].parameters(), *decoder.parameters()]
        opt = make_optimizer(cfg, params)
        losses = []
        for _ in range(cfg.pretrain_steps):
            x, _ = next(batches)
            with torch.no_grad():
                inp = net(x, upto=l)
            loss = nn.functional.mse_loss(decoder(net.layer(l, inp)), inp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                break
        k = max(1, min(10, len(losses) // 10))
        layers.append({"layer": l, "loss_first": float(np.mean(losses[:k])),
                       "loss_last": float(np.mean(losses[-k:])), "steps": len(losses)})
        if on_layer_done is not None:
            on_layer_done(l, net)
    return {"steps": sum(d["steps"] for d in layers), "layers": layers}


class VGModule(pl.LightningModule):
    """The training step: forward, backward, measure, clip, check, step."""

    def __init__(self, cfg: RunConfig, task: Task, net: nn.Module, recorder: Recorder):
        super().__init__()
        self.automatic_optimization = False
        self.cfg, self.task, self.net, self.rec = cfg, task, net, recorder
        self.record_at = set(recorder.steps)
        self.step_i = 0
        n = max(cfg.steps, 1)
        dev = next(net.parameters()).device
        self.loss_buf = torch.zeros(n, device=dev)   # on the net's device: no sync per step on a GPU
        self.gnorm_buf = torch.zeros(n, device=dev)
        self.rows: list[tuple] = []      # (step, split, metric, value)
        self.diverged_at: int | None = None
        self._last_eval = 0
        self._params = [p for p in net.parameters() if p.requires_grad]
        self.weight_norm_init = self.weight_norm()
        self.ratio_init_f64: float | None = None   # see instruments.ratio_float64
        self.progress = None  # a Progress when `vgbench train` writes to a terminal

    def configure_optimizers(self):
        return make_optimizer(self.cfg, self.net.parameters())

    # The total gradient norm costs ~0.2 ms per step for a 20x128 MLP on one CPU thread
    # (~5 % of a step), so without clipping it is taken every NORM_EVERY steps and at every
    # measurement; a non-finite gradient between two such steps makes the next loss
    # non-finite, so divergence is still caught, at most one step later.
    NORM_EVERY = 10

    def backward_on(self, batch, step: int, capture: bool, need_norm: bool = True):
        """Loss and total gradient norm (None if not needed) of one batch; measured into
        the recorder if capture."""
        x, y = batch
        for p in self._params:
            p.grad = None
        loss = self.loss_of(self.net, x, y, capture)
        loss.backward()
        norm = None
        if need_norm or capture:
            grads = [p.grad for p in self._params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        if capture:
            self.rec.record(step, self.net)
            if step == 0 and self.rec.small_first(0):
                self.ratio_init_f64 = ratio_float64(self.net, lambda net, to: self.loss_of(net, to(x), to(y)))
        return loss.detach(), norm

    def loss_of(self, net: nn.Module, x, y, capture: bool = False) -> torch.Tensor:
        """The training loss of `net` on (x, y), auxiliary losses included."""
        out = net(x, capture=capture)
        loss = task_loss(out, y, self.task.loss)
        if net.aux_out:
            loss = loss + self.cfg.aux_loss_weight * sum(task_loss(a, y, self.task.loss) for a in net.aux_out)
        return loss

    def log_eval(self, step: int) -> None:
        if step > self._last_eval:
            window = slice(self._last_eval, step)
            self.rows.append((step, "train", "loss", float(self.loss_buf[window].mean())))
            # max over the steps where the norm was taken (every step when clipping)
            self.rows.append((step, "train", "grad_norm_max", float(self.gnorm_buf[window].max())))
        self._last_eval = step
        # the weights' growth over training (the shallow ReLU blow-up): L2 norm of all parameters
        self.rows.append((step, "train", "weight_norm", self.weight_norm()))
        for k, v in evaluate(self.net, self.task, "val").items():
            self.rows.append((step, "val", k, v))

    def weight_norm(self) -> float:
        with torch.no_grad():
            n = float(torch.nn.utils.get_total_norm(self._params, foreach=True))
        return n if math.isfinite(n) else None

    def training_step(self, chunk, batch_idx):
        """Lightning's step is a chunk of up to CHUNK training steps (see Chunks)."""
        opt = self.optimizers()
        for batch in chunk:
            if not self.one_step(batch, opt):
                self.trainer.should_stop = True
                break
        return None

    def one_step(self, batch, opt) -> bool:
        """One training step; False when it diverged (nothing updated)."""
        s = self.step_i
        if s == 0:
            self.log_eval(0)
        clip = self.cfg.clip_norm
        need_norm = clip is not None or s % self.NORM_EVERY == 0
        loss, norm = self.backward_on(batch, s, s in self.record_at, need_norm)
        finite = torch.isfinite(loss) if norm is None else torch.isfinite(loss) & torch.isfinite(norm)
        if not bool(finite):
            self.diverged_at = s
            self.rows.append((s, "train", "weight_norm", self.weight_norm()))  # how far the weights grew
            return False
        if clip is not None:
            torch.nn.utils.clip_grads_with_norm_(self._params, clip, norm, foreach=True)
        if self.cfg.warmup_steps:   # linear warm-up: lr (s + 1) / warmup_steps until it reaches lr
            for g in opt.param_groups:
                g["lr"] = self.cfg.lr * min(1.0, (s + 1) / self.cfg.warmup_steps)
        opt.step()
        self.loss_buf[s] = loss
        if norm is not None:
            self.gnorm_buf[s] = norm
        self.step_i = s + 1
        if self.step_i % self.cfg.eval_every == 0 or self.step_i == self.cfg.steps:
            self.log_eval(self.step_i)
        if self.progress is not None:
            self.progress.update(self.step_i, self.loss_buf, self.cfg.steps)
        return True


class Chunks:
    """The training stream as Lightning sees it: one item per CHUNK training steps.

    Lightning's loop costs ~0.4 ms per item it hands to training_step (hooks, fetcher, batch
    transfer, progress tracking): half of a step of the default profile's 5x64 MLPs. Handing it
    chunks of CHUNK batches leaves Lightning in charge of the loop (max_steps: every opt.step()
    counts; SIGTERM; the logger) at a per-step cost CHUNK times smaller. A chunk draws its batches
    lazily, when training_step takes them, so the data order is the step order and Lightning's
    prefetching of the next item draws nothing. `finish()` then draws the one batch Lightning's
    prefetcher drew after the last step when it was handed single batches, so the stream after
    training -- the final measurement's batch -- is what it has always been (runs stay bit-identical).
    """
    CHUNK = 50

    def __init__(self, batches: Batches, steps: int):
        self.it, self.steps = iter(batches), steps

    def __iter__(self):
        for start in range(0, self.steps, self.CHUNK):
            yield itertools.islice(self.it, min(self.CHUNK, self.steps - start))  # draws when iterated

    def finish(self) -> None:
        next(self.it)


class Progress:
    """One self-overwriting line on a terminal: step, loss, steps/s, ETA (at most 4 updates/s).
    The rate is that of the steps since the previous update, smoothed (half old, half new): a rate
    since the start counted the Trainer's setup and the first step's warm-up, and read 1 steps/s,
    ETA 413 s, at the first update of a run that then took 3 s."""

    def __init__(self, stream, clock=time.perf_counter):
        self.stream, self.clock = stream, clock
        self.last, self.last_step, self.rate = None, 0, None

    def update(self, step: int, losses: torch.Tensor, total: int) -> None:
        now = self.clock()
        if self.last is not None and now - self.last < 0.25 and step < total:
            return
        if self.last is not None and step > self.last_step:
            r = (step - self.last_step) / max(now - self.last, 1e-9)
            self.rate = r if self.rate is None else (self.rate + r) / 2
        self.last, self.last_step = now, step
        loss = float(losses[max(0, step - 10):step].mean())
        rate, eta = ("--", "--") if self.rate is None else (f"{self.rate:.0f}", f"{(total - step) / self.rate:.0f}")
        self.stream.write(f"\rstep {step}/{total}  loss {loss:.4g}  {rate} steps/s  ETA {eta} s   ")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def _device() -> torch.device:
    want = os.environ.get("VGBENCH_ACCELERATOR", "auto")
    if want in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


class _Wandb:
    """Optional Weights & Biases tracking (offline unless WANDB_MODE says otherwise).
    Every call is guarded: a missing or failing wandb never fails a run. An online init that
    fails (server unreachable) waits at most VGBENCH_WANDB_TIMEOUT seconds (default 20), then
    this run and every later run of the process are tracked offline."""

    fallback: str | None = None  # set to "offline" after an online init failed in this process

    def __init__(self, cfg: RunConfig, out: Path, name: str, group: str, tags: tuple):
        self.logger = None
        mode = _Wandb.fallback or os.environ.get("WANDB_MODE", "offline")
        if mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            self.logger = self._start(cfg, out, name, group, tags, mode)
        except Exception as e:  # noqa: BLE001 - tracking is optional by design
            if mode == "offline":
                log.warning("wandb disabled for this run: %s", e)
                return
            _Wandb.fallback = "offline"
            log.warning("wandb %s init failed (%s); tracking offline for the rest of this process",
                        mode, " ".join(str(e).split())[:200])
            try:
                self.logger = self._start(cfg, out, name, group, tags, "offline")
            except Exception as e2:  # noqa: BLE001
                log.warning("wandb disabled for this run: %s", e2)

    @staticmethod
    def _start(cfg, out, name, group, tags, mode):
        import wandb
        from pytorch_lightning.loggers import WandbLogger
        timeout = float(os.environ.get("VGBENCH_WANDB_TIMEOUT", "20"))
        logger = WandbLogger(project=os.environ.get("WANDB_PROJECT", "vgbench"), name=name,
                             group=group, tags=list(tags), save_dir=str(out), mode=mode,
                             config=cfg.to_dict(), settings=wandb.Settings(init_timeout=timeout))
        # Lightning passes anonymous=None, which wandb >= 0.19 answers with a deprecation warning
        # on every run's terminal ("The anonymous setting has no effect")
        if getattr(logger, "_wandb_init", {}).get("anonymous", False) is None:
            del logger._wandb_init["anonymous"]
        _ = logger.experiment  # start now, so a failure is caught here
        return logger

    def finish(self, metrics: pd.DataFrame, summary: dict) -> None:
        if self.logger is None:
            return
        try:
            exp = self.logger.experiment
            wide = metrics.assign(key=metrics.split + "/" + metrics.metric).pivot_table(
                index="step", columns="key", values="value")
            for step, row in wide.iterrows():
                exp.log({k: v for k, v in row.items() if pd.notna(v)}, step=int(step))
            exp.summary.update({k: v for k, v in _flatten(summary).items() if v is not None})
            exp.finish()
        except Exception as e:  # noqa: BLE001
            log.warning("wandb logging failed (results on disk are unaffected): %s", e)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (int, float, str)) or v is None:
            out[key] = v
    return out


def run(cfg: RunConfig, out: str | Path, force: bool = False, tags: tuple = (),
        threads: int | None = None, progress=None) -> dict:
    """Train one run into `out`; returns the summary dict. progress: a text stream (a
    terminal) to show a progress line on, or None (pipeline jobs: logs stay clean)."""
    t0 = time.perf_counter()
    out = Path(out)
    lock = paths.prepare_run_dir(out, force)   # no other process trains into `out` until this one ends
    try:
        return _run(cfg, out, tags, threads, progress, t0)
    finally:
        lock.release()


def _run(cfg: RunConfig, out: Path, tags: tuple, threads: int | None, progress, t0: float) -> dict:
    threads = threads or int(os.environ.get("VGBENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    cond = config_hash(cfg.condition())
    write_json_atomic(out / paths.CONFIG, {"config": cfg.to_dict(), "run_id": out.name,
                                           "condition_id": cond, "config_hash": config_hash(cfg.identity()),
                                           "versions": versions(), "commit": git_commit(),
                                           "torch_threads": torch.get_num_threads(), "platform": platform_info()})
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*The `srun` command is available.*")  # vgbench runs one process per job
    warnings.filterwarnings("ignore", ".*Your `IterableDataset` has `__len__`.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")  # Lightning's own use of torch's pytree
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)

    pl.seed_everything(cfg.seed, verbose=False)
    device = _device()
    task = load_task(cfg).to(device)
    net = build_model(cfg, task).to(device)
    pre = pretrain_greedy(cfg, net, task) if cfg.pretrain == "greedy_ae" else None

    sched = schedule(cfg.steps, cfg.record_points)
    rec = Recorder(net, sched, cfg.activation, cfg.recurrent)
    if cfg.jacobian_inputs > 0:
        from vgbench.instruments import jacobian_singular_values
        rec.record_jacobian(0, jacobian_singular_values(net, task.x["train"][:cfg.jacobian_inputs]))
    module = VGModule(cfg, task, net, rec)
    module.progress = Progress(progress) if progress is not None and cfg.steps > 0 else None
    wb = _Wandb(cfg, out, out.name, cond, tags)
    batches = Batches(task.x["train"], task.y["train"], cfg.batch_size, cfg.seed)
    stream = iter(batches)
    net.train()
    t_fit = time.perf_counter()
    if cfg.steps > 0:
        trainer = pl.Trainer(max_steps=cfg.steps, max_epochs=-1, logger=wb.logger or False,
                             accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0,
                             limit_val_batches=0, log_every_n_steps=max(cfg.steps, 1))
        chunks = Chunks(batches, cfg.steps)
        try:
            trainer.fit(module, train_dataloaders=chunks)
        except SystemExit as e:   # Lightning turns Ctrl-C into a bare sys.exit(1): say what it was
            if type(e) is SystemExit and trainer.interrupted:
                raise KeyboardInterrupt from None
            raise
        if module.diverged_at is None:
            chunks.finish()
        net.to(device)  # Lightning's teardown moves the module back to the CPU
    train_s = time.perf_counter() - t_fit
    if module.progress is not None:
        module.progress.close()
    if cfg.steps == 0:
        module.log_eval(0)
    if module.diverged_at is None:
        # the last measurement: gradients after `steps` updates, on a fresh batch, no update
        loss, norm = module.backward_on(next(stream), cfg.steps, True)
        if not bool(torch.isfinite(loss) & torch.isfinite(norm)):
            module.diverged_at = cfg.steps
    net.zero_grad(set_to_none=True)

    final = {}
    for split in ("val", "test"):
        for k, v in evaluate(net, task, split).items():
            final[f"{split}/{k}"] = v
            module.rows.append((module.step_i, split, k, v))
    if module.step_i > 0:
        tail = module.loss_buf[max(0, module.step_i - cfg.eval_every):module.step_i]
        final["train/loss"] = float(tail.mean())
    metrics = pd.DataFrame(module.rows, columns=list(paths.METRIC_COLUMNS))
    metrics.to_csv(out / paths.METRICS, index=False)
    rec.frame().to_parquet(out / paths.GRADIENTS, index=False)

    summary = {
        "run_id": out.name,
        "condition_id": cond,
        "status": "diverged" if module.diverged_at is not None else "ok",
        "diverged_at_step": module.diverged_at,
        "final": final,
        "grad_ratio_init": rec.ratio(0),
        # where the first layer's gradient at init is below SMALL_NORM: the ratio through a float64 copy
        "grad_ratio_init_f64": module.ratio_init_f64,
        "grad_ratio_final": rec.ratio(cfg.steps) if rec.filled[-1] else None,
        "max_grad_norm": float(module.gnorm_buf[:max(module.step_i, 1)].max()) if module.step_i else None,
        "weight_norm_init": module.weight_norm_init,
        "weight_norm_final": module.weight_norm(),  # after the last update (the last finite one if diverged)
        "steps": module.step_i,
        "pretrain_steps": pre["steps"] if pre else 0,
        "pretrain": pre,
        "baseline": {"value": task.baseline, "metric": task.baseline_metric},
        "wall_s": time.perf_counter() - t0,
        "train_s": train_s,                # the training loop (Trainer built and fitted)
        "setup_s": t_fit - t0,             # run directory, data, model, pretraining, W&B init
        "device": str(device),
    }
    wb.finish(metrics, summary)
    write_json_atomic(out / paths.SUMMARY, summary)
    return summary

"""GPU checks: skipped without CUDA (checked on an H100 during development)."""
import pytest
import torch

from vgbench.config import load
from vgbench.data import load_task
from vgbench.models import build_model
from vgbench.train import run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("cfg", [{"depth": 3, "width": 16}, {"model": "resnet", "depth": 4, "width": 8, "norm": "batch"},
                                 {"model": "lstm", "task": "adding", "depth": 1, "width": 8,
                                  "task_args": {"seq_len": 10, "n_train": 200, "n_val": 50, "n_test": 50}}])
def test_runs_on_the_gpu(tmp_path, monkeypatch, cfg):
    monkeypatch.setenv("VGBENCH_ACCELERATOR", "auto")
    s = run(load({**cfg, "steps": 20, "record_points": 3}), tmp_path / "r")
    assert s["device"] == "cuda" and s["status"] == "ok" and s["grad_ratio_final"] is not None


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_fused_cuda_cells_match_the_equations(model):
    cfg = load({"model": model, "task": "adding", "depth": 1, "width": 8,
                "task_args": {"seq_len": 10, "n_train": 20, "n_val": 5, "n_test": 5}})
    task = load_task(cfg)
    net = build_model(cfg, task).cuda()
    x = task.x["train"].cuda()
    fused = net(x)
    net.fused = False
    assert torch.allclose(fused, net(x), atol=1e-5)

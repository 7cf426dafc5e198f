"""Shared test settings: W&B off unless a test turns it on, one thread, tiny configs."""
import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("VGBENCH_ACCELERATOR", "cpu")
torch.set_num_threads(1)


@pytest.fixture
def tiny():
    """A few-second mnist1d MLP run config (a dict, so tests can vary it)."""
    return {"task": "mnist1d", "model": "mlp", "depth": 3, "width": 16, "steps": 20,
            "batch_size": 50, "record_points": 4}

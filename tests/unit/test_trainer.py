"""The Trainer's stages that need no data: sizes checked before anything is built, and the
learning-rate schedule (cosine over the step budget, or over --max-minutes when that runs out
first, down to lr * final_lr_fraction)."""
from __future__ import annotations

import math
import re
import time

import pytest
import torch
from tsva.export import distributed
from tsva.export.errors import TsvaExportError
from tsva.export.optics import Optics, Sample
from tsva.export.train import TrainConfig
from tsva.export.trainer import Trainer, training_loss

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _trainer(**overrides) -> Trainer:
    cfg = TrainConfig(**{"base_width": 4, "depth": 2, "patch_size": 32, "steps": 100, "progress": False, **overrides})
    return Trainer(cfg, Optics(), Sample(), distributed.World(), torch.device("cpu"), log=lambda *_: None)


def test_the_schedule_decays_by_cosine_over_the_steps():
    t = _trainer(lr=1e-3, final_lr_fraction=0.1)
    t.start = time.monotonic()
    seen = {}
    for step in (0, 50, 100):
        t.step = step
        seen[step] = t.learning_rate()
    assert seen[0] == pytest.approx(1e-3) and seen[100] == pytest.approx(1e-4)
    assert seen[50] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2))))


def test_the_schedule_follows_the_clock_when_max_minutes_runs_out_first():
    t = _trainer(lr=1e-3, final_lr_fraction=0.1, max_minutes=10.0)
    t.start, t.step = time.monotonic(), 10
    t.prior_minutes = 5.0   # half the time gone at a tenth of the steps (a resumed run counts its minutes)
    assert t.learning_rate() == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5), rel=1e-3)
    t.prior_minutes = 20.0  # past the budget: the floor
    assert t.learning_rate() == pytest.approx(1e-4)


@pytest.mark.parametrize("overrides,message", [
    ({"patch_size": 30}, "--patch-size 30 must be a multiple of 2**depth = 4"),
    ({"crop": 6}, "--crop 6 must be a multiple of 2**depth = 4"),
    ({"crop": 64}, "--crop 64 is larger than --patch-size 32"),
    ({"sections": "thick"}, "--sections must be mixed or fixed"),
])
def test_bad_sizes_are_refused_before_anything_is_built(overrides, message):
    with pytest.raises(TsvaExportError, match=re.escape(message)):
        _trainer(**overrides)


def test_the_output_folder_defaults_to_the_architecture():
    assert TrainConfig().output == "runs/tsva" and TrainConfig(arch="unet").output == "runs/unet"
    assert TrainConfig(arch="unet", output="x").output == "x"


def test_the_psnr_loss_is_the_mean_of_each_pairs_negative_psnr():
    """Two pairs 10 and 30 dB from their truth: the psnr loss is -20 dB whatever their sizes, while
    the MSE is the hard pair's almost alone."""
    truth = torch.zeros(2, 3, 8, 8)
    pred = torch.stack([torch.full((3, 8, 8), 10 ** -0.5), torch.full((3, 8, 8), 10 ** -1.5)])
    assert training_loss(pred, truth, "psnr").item() == pytest.approx(-20.0, abs=1e-3)
    assert training_loss(pred, truth, "mse").item() == pytest.approx((0.1 + 0.001) / 2)
    with pytest.raises(TsvaExportError, match="--loss must be mse or psnr"):
        training_loss(pred, truth, "l1")

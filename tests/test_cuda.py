"""The CUDA code paths: training (determinism, resume, speed options), attacks and the front end.

These run only where torch sees a GPU (the development machines and CI have none; they were run on
an H100 through the project's device tool, see docs/results.md). Everything they check on CUDA is
also checked on CPU by test_train.py, test_attacks.py and test_features.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustmer.attacks import BIM
from robustmer.features import LogFilteredSpectrogram
from robustmer.models import build_model
from robustmer.train import train_run
from test_train import WIDTH, ToyDataset, cfg, weights

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _train(tmp: Path, resume: bool = False, **kw: object) -> torch.nn.Module:
    config = cfg(device="cuda", **kw)
    return train_run(ToyDataset(seed=0), ToyDataset(n=12, seed=1), tmp, model_type="A2M2E",
                     model_settings={"width": WIDTH}, config=config, progress=False,
                     resume=resume).model


def test_same_seed_and_resume_give_identical_weights_on_cuda(tmp_path: Path) -> None:
    a = weights(_train(tmp_path / "a", max_epochs=3))
    b = weights(_train(tmp_path / "b", max_epochs=3))
    _train(tmp_path / "c", max_epochs=1)
    c = weights(_train(tmp_path / "c", resume=True, max_epochs=3))
    for key in a:
        assert a[key].device.type == "cuda"
        assert torch.equal(a[key], b[key]), key
        assert torch.equal(a[key], c[key]), key


def test_amp_and_channels_last_train_on_cuda(tmp_path: Path) -> None:
    res = train_run(ToyDataset(seed=0), ToyDataset(n=12, seed=1), tmp_path, model_type="A2E",
                    model_settings={"width": WIDTH}, progress=False,
                    config=cfg(device="cuda", max_epochs=6, lr=3e-3, amp=True,
                               channels_last=True))
    losses = [r["train_loss"] for r in res.history]
    # float16 with loss scaling skips the first steps while the scale comes down from 2**16,
    # so this asks less than the float32 test (loss halved) does
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


def test_attack_on_cuda_agrees_with_cpu() -> None:
    torch.manual_seed(0)
    model = build_model("a2e", width=0.125).eval()
    x = torch.randn(4, 1, 313, 149)
    y = torch.rand(4, 8)
    attack = BIM(eps=0.05, eta=0.01, max_iters=20, stop="none")
    cpu = attack(model, x, y)
    gpu = attack(model.cuda(), x.cuda(), y.cuda()).to("cpu")
    assert gpu.delta.abs().max() <= 0.05 + 1e-6
    with torch.no_grad():
        clean = model(x.cuda()).cpu()
        mse_cpu = ((model(cpu.x_adv.cuda()).cpu() - y) ** 2).mean()
        mse_gpu = ((model(gpu.x_adv.cuda()).cpu() - y) ** 2).mean()
    # cuDNN convolutions use TF32 by default on Ampere and later (torch's default), so CUDA and
    # CPU outputs agree to about 1e-3 relative, not to float32 rounding
    assert torch.allclose(clean, model.cpu()(x), rtol=1e-2, atol=1e-2)
    mse_clean = ((clean - y) ** 2).mean()
    # sign steps can flip where a gradient is ~0, so the two deltas may differ a little, but
    # both attacks must raise the error by about the same amount
    assert mse_gpu > mse_clean and mse_cpu > mse_clean
    assert abs(float(mse_gpu - mse_cpu)) < 0.1 * float(mse_cpu - mse_clean)


def test_front_end_on_cuda_matches_cpu() -> None:
    wave = torch.randn(2, 22050 * 3) * 0.1
    front = LogFilteredSpectrogram()
    cpu = front(wave)
    gpu = front.cuda()(wave.cuda()).cpu()
    assert gpu.shape == cpu.shape
    assert torch.allclose(gpu, cpu, atol=1e-4)

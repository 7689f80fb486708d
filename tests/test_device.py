"""Device and precision choice: what ``auto`` means on each kind of machine."""

from __future__ import annotations

import pytest
import torch

from dmsps import device
from dmsps.errors import DmspsError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_auto_trains_in_bf16_only_on_cpus_that_compute_it(monkeypatch, native):
    monkeypatch.setattr(device, "native_cpu_bf16", lambda: native)
    expected = torch.bfloat16 if native else None
    assert device.resolve_amp("auto", CPU, training=True) is expected
    # CPU inference stays fp32 either way; CUDA is bf16 either way.
    assert device.resolve_amp("auto", CPU) is None
    assert device.resolve_amp("auto", CUDA) is torch.bfloat16
    assert device.resolve_amp("auto", CUDA, training=True) is torch.bfloat16


def test_explicit_choices_win_over_the_hardware(monkeypatch):
    monkeypatch.setattr(device, "native_cpu_bf16", lambda: True)
    assert device.resolve_amp("none", CPU, training=True) is None
    assert device.resolve_amp("fp16", CPU, training=True) is torch.float16
    monkeypatch.setattr(device, "native_cpu_bf16", lambda: False)
    assert device.resolve_amp("bf16", CPU) is torch.bfloat16
    with pytest.raises(DmspsError, match="amp must be"):
        device.resolve_amp("fp8", CPU)


def test_native_bf16_probe_follows_torch(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert device.native_cpu_bf16()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not device.native_cpu_bf16()


@pytest.mark.parametrize("native", [True, False])
def test_the_trainer_resolves_auto_as_training(monkeypatch, tmp_path, tiny_dataset, native):
    from dmsps.config import TrainConfig
    from dmsps.data.layout import Dataset
    from dmsps.training.trainer import Trainer

    monkeypatch.setattr(device, "native_cpu_bf16", lambda: native)
    cfg = TrainConfig(
        device="cpu", features=[4, 8, 16, 32, 64], iterations=2, batch_size=2, patch_size=32
    )
    trainer = Trainer(Dataset(tiny_dataset), cfg, tmp_path / "run", progress=False)
    assert trainer.amp is (torch.bfloat16 if native else None)
    # final.json says what `auto` came to, since config.json only says "auto".
    assert trainer.fit()["precision"] == ("bf16" if native else "fp32")

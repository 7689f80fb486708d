"""Training loop behaviour on a tiny dataset (a few iterations, seconds on a CPU)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from dmsps.cli import main
from dmsps.config import TrainConfig
from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.models.checkpoint import load_checkpoint
from dmsps.training.trainer import Trainer

SMALL = dict(
    iterations=6,
    batch_size=4,
    patch_size=32,
    val_interval=3,
    log_interval=1,
    features=[4, 8, 16, 32, 64],
    device="cpu",
    threads=1,
)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("method", ["dmsps", "pce", "dmpls", "full"])
def test_every_method_trains_and_writes_artefacts(tiny_dataset, tmp_path, method):
    out = tmp_path / method
    summary = Trainer(Dataset(tiny_dataset), TrainConfig(method=method, **SMALL), out, False).fit()
    assert summary["status"] == "complete" and summary["iterations"] == 6
    for name in (
        "config.json",
        "log.csv",
        "final.json",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
    ):
        assert (out / name).is_file(), name
    rows = _rows(out / "log.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, 7))
    assert all(float(r["loss"]) == float(r["loss"]) for r in rows)  # no NaN
    assert json.loads((out / "config.json").read_text())["method"] == method


def test_a_folder_another_training_writes_to_is_refused_untouched(tiny_dataset, tmp_path):
    from dmsps.io.lock import sole_writer

    out = tmp_path / "busy"
    trainer = Trainer(Dataset(tiny_dataset), TrainConfig(**SMALL), out, False)
    with sole_writer(out), pytest.raises(DmspsError, match="another dmsps process"):
        trainer.fit()
    assert list(out.iterdir()) == []
    assert trainer.fit()["status"] == "complete"  # free again once the other one ends


def test_resumed_run_reaches_same_weights_as_uninterrupted(tiny_dataset, tmp_path):
    ds = Dataset(tiny_dataset)
    Trainer(ds, TrainConfig(**SMALL), tmp_path / "a", False).fit()
    stopped = Trainer(ds, TrainConfig(stop_at=3, **SMALL), tmp_path / "b", False).fit()
    assert stopped["status"] == "stopped" and not (tmp_path / "b" / "final.json").exists()
    with pytest.raises(DmspsError, match="--resume"):
        Trainer(ds, TrainConfig(**SMALL), tmp_path / "b", False).fit(resume=False)
    Trainer(ds, TrainConfig(**SMALL), tmp_path / "b", False).fit(resume=True)
    wa, wb = (
        _weights(tmp_path / "a/checkpoints/last.pt"),
        _weights(tmp_path / "b/checkpoints/last.pt"),
    )
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    rows = _rows(tmp_path / "b" / "log.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, 7))


def test_different_seeds_differ_and_same_seed_repeats(tiny_dataset, tmp_path):
    ds = Dataset(tiny_dataset)
    cfg = dict(SMALL, iterations=2, val_interval=2)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        Trainer(ds, TrainConfig(seed=seed, **cfg), tmp_path / name, False).fit()
    a, b, c = (_weights(tmp_path / f"{n}/checkpoints/last.pt") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_carries_what_inference_needs(tiny_dataset, tmp_path):
    Trainer(Dataset(tiny_dataset), TrainConfig(**SMALL), tmp_path / "r", False).fit()
    meta = load_checkpoint(tmp_path / "r/checkpoints/best.pt")["meta"]
    assert meta["class_names"] == ["background", "RV", "Myo", "LV"]
    assert meta["patch_size"] == [32, 32] and meta["normalization"] == ["zscore"]
    assert meta["inference"] == {"kind": "resized-slices", "size": [32, 32]}
    assert meta["model"]["in_channels"] == 1 and meta["model"]["num_classes"] == 4


def test_init_from_starts_from_given_weights(tiny_dataset, tmp_path):
    ds = Dataset(tiny_dataset)
    Trainer(ds, TrainConfig(**SMALL), tmp_path / "s1", False).fit()
    cfg = TrainConfig(
        **dict(SMALL, iterations=1, val_interval=1),
        optimizer="adam",
        lr=0.0,
        weight_decay=0.0,
        init_from=str(tmp_path / "s1/checkpoints/best.pt"),
    )
    Trainer(ds, cfg, tmp_path / "s2", False).fit()
    w1, w2 = (
        _weights(tmp_path / "s1/checkpoints/best.pt"),
        _weights(tmp_path / "s2/checkpoints/last.pt"),
    )
    # lr 0: the convolution weights are unchanged (BN running stats may move)
    convs = [k for k in w1 if k.endswith("weight") and w1[k].dim() == 4]
    assert convs and all(torch.equal(w1[k], w2[k]) for k in convs)


def test_cli_train_and_bad_options(tiny_dataset, tmp_path, capsys):
    args = [
        "train",
        str(tiny_dataset),
        "--out",
        str(tmp_path / "r"),
        "--preset",
        "demo",
        "--iterations",
        "2",
        "--val-interval",
        "2",
        "--batch-size",
        "2",
        "--patch-size",
        "32",
        "--features",
        "4,8,16,32,64",
        "--quiet",
    ]
    assert main(args) == 0
    assert "best validation Dice" in capsys.readouterr().out
    assert main([*args[:4], "--method", "magic", "--quiet"]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err
    assert main([*args[:4], "--iterations", "many"]) == 2
    assert "bad value for iterations" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


def test_early_stopping_after_patience_without_improvement(tiny_dataset, tmp_path, monkeypatch):
    scores = iter([0.5, 0.6, 0.55, 0.58, 0.59, 0.9, 0.9, 0.9])
    monkeypatch.setattr(Trainer, "validate", lambda self, model, volumes: next(scores))
    cfg = TrainConfig(**dict(SMALL, iterations=8, val_interval=1), patience=3)
    summary = Trainer(Dataset(tiny_dataset), cfg, tmp_path / "r", False).fit()
    # best 0.6 at iteration 2; iterations 3, 4, 5 bring nothing better -> stop at 5
    assert summary["status"] == "early-stopped"
    assert summary["iterations"] == 5 and summary["best_iteration"] == 2
    assert summary["best_val_dice"] == 0.6


@pytest.mark.parametrize(
    "optimizer, schedule, expect_half",
    [
        ("sgd", "auto", 0.1 * 0.5**0.9),  # the paper's poly decay
        ("adam", "auto", 0.1),  # the paper's constant-lr Adam
        ("adam", "poly", 0.1 * 0.5**0.9),
        ("sgd", "constant", 0.1),
    ],
)
def test_lr_schedule(tiny_dataset, tmp_path, optimizer, schedule, expect_half):
    cfg = TrainConfig(**{**SMALL, "iterations": 10}, optimizer=optimizer, schedule=schedule, lr=0.1)
    trainer = Trainer(Dataset(tiny_dataset), cfg, tmp_path / "r", progress=False)
    opt = trainer.make_optimizer(torch.nn.Linear(2, 2))
    assert trainer.set_lr(opt, 0) == pytest.approx(0.1)
    assert trainer.set_lr(opt, 5) == pytest.approx(expect_half)
    assert opt.param_groups[0]["lr"] == pytest.approx(expect_half)


def test_bad_schedule_is_refused(tiny_dataset, tmp_path):
    cfg = TrainConfig(**SMALL, schedule="cosine")
    with pytest.raises(DmspsError, match="schedule must be"):
        Trainer(Dataset(tiny_dataset), cfg, tmp_path / "r", progress=False).fit()


def test_encoder_dropout_reaches_the_network_and_bad_values_are_refused(tiny_dataset, tmp_path):
    ds = Dataset(tiny_dataset)
    default = Trainer(ds, TrainConfig(**SMALL), tmp_path / "a", progress=False)
    assert default.model_cfg.encoder_dropout == [0.05, 0.1, 0.2, 0.3, 0.5]
    cfg = TrainConfig(**SMALL, encoder_dropout=[0.0] * 5)
    model = Trainer(ds, cfg, tmp_path / "b", progress=False).build_model()
    rates = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert rates and all(p == 0.0 for p in rates)
    for bad in ([0.1, 0.1], [0.0, 0.0, 0.0, 0.0, 1.0]):
        with pytest.raises(DmspsError, match="encoder_dropout"):
            Trainer(ds, TrainConfig(**SMALL, encoder_dropout=bad), tmp_path / "c", False)


def test_tensorboard_logs_the_training_curve(tiny_dataset, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "r"
    Trainer(Dataset(tiny_dataset), TrainConfig(**SMALL, tensorboard=True), out, False).fit()
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"loss", "lr", "val_dice"} <= set(tags)
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in acc.Scalars("val_dice")] == [3, 6]
    rows = _rows(out / "log.csv")
    assert acc.Scalars("loss")[-1].value == pytest.approx(float(rows[-1]["loss"]), rel=1e-6)


def test_a_diverged_run_stops_with_a_clear_error_and_keeps_its_last_checkpoint(
    tiny_dataset, tmp_path
):
    out = tmp_path / "r"
    cfg = TrainConfig(**{**SMALL, "log_interval": 2})
    trainer = Trainer(Dataset(tiny_dataset), cfg, out, False)
    loss = trainer.method.loss

    def nan_from_iteration_4(main, aux, batch, it, generator=None):
        value, terms = loss(main, aux, batch, it, generator)
        return (value * float("nan") if it >= 3 else value), terms  # it counts from 0

    trainer.method.loss = nan_from_iteration_4
    with pytest.raises(DmspsError, match="diverged, the loss is nan at iteration 4"):
        trainer.fit()
    # Iteration 4 is logged but not validated: last.pt still holds iteration 3's weights.
    last = load_checkpoint(out / "checkpoints/last.pt")
    assert last["iteration"] == 3
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def test_a_folder_is_not_reused_or_resumed_with_other_settings(tiny_dataset, tmp_path):
    ds = Dataset(tiny_dataset)
    cfg = dict(SMALL, iterations=2, val_interval=2)
    done = tmp_path / "done"
    first = Trainer(ds, TrainConfig(**cfg), done, False).fit()
    # Other learning rate: before, the old summary came back as if for these settings.
    with pytest.raises(DmspsError, match=r"other settings \(lr: 0.01 -> 0.03\)"):
        Trainer(ds, TrainConfig(**{**cfg, "lr": 0.03}), done, False).fit()
    # Where and how it runs may change: the finished stage is reused.
    again = Trainer(ds, TrainConfig(**{**cfg, "threads": 2, "log_interval": 7}), done, False)
    assert again.fit() == first
    half = tmp_path / "half"
    Trainer(ds, TrainConfig(**{**SMALL, "stop_at": 3}), half, False).fit()
    with pytest.raises(DmspsError, match="method: dmsps -> pce"):
        Trainer(ds, TrainConfig(**{**SMALL, "method": "pce"}), half, False).fit(resume=True)
    assert Trainer(ds, TrainConfig(**SMALL), half, False).fit(resume=True)["iterations"] == 6


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_cuda_runs_use_the_fused_optimizer_and_it_updates_like_the_unfused(
    tiny_dataset, tmp_path, optimizer
):
    trainer = Trainer(Dataset(tiny_dataset), TrainConfig(optimizer=optimizer, **SMALL), tmp_path)
    assert trainer.make_optimizer(torch.nn.Linear(2, 2)).defaults["fused"] is False
    trainer.device = torch.device("cuda")  # the choice only; fused updates also run on CPU
    weights = []
    for fused in (True, False):
        torch.manual_seed(0)
        net = torch.nn.Conv2d(1, 3, 3)
        if not fused:
            trainer.device = torch.device("cpu")
        opt = trainer.make_optimizer(net)
        assert opt.defaults["fused"] is fused
        for _ in range(3):
            opt.zero_grad()
            net(torch.ones(1, 1, 5, 5)).square().mean().backward()
            opt.step()
        weights.append(net.weight.detach().clone())
    assert torch.allclose(weights[0], weights[1], atol=1e-6)

"""Two CPU processes (gloo): torchrun end to end with resume, and one step against one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch
import torch.multiprocessing as mp
from torch import nn

from dmsps.config import TrainConfig
from dmsps.data.layout import Dataset
from dmsps.models.checkpoint import load_checkpoint
from dmsps.training import distributed
from dmsps.training.trainer import Trainer

TINY = [
    "--iterations", "6", "--batch-size", "4", "--patch-size", "32", "--val-interval", "3",
    "--log-interval", "1", "--features", "4,8,16,32,64", "--device", "cpu", "--threads", "1",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(dataset, out, *extra) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "dmsps.cli", "train", str(dataset), "--out", str(out), "--preset", "demo",
        *TINY, *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _why(run: subprocess.CompletedProcess) -> str:
    """A failed run's stderr, both ends: the ranks' own messages come first and torchrun's
    long summary last (once, only the summary was shown, and a rank's abort went unread)."""
    err = run.stderr
    return err if len(err) <= 6000 else f"{err[:4000]}\n[...]\n{err[-2000:]}"


def test_torchrun_trains_writes_once_and_resumes_to_the_same_weights(tiny_dataset, tmp_path):
    whole = _torchrun(tiny_dataset, tmp_path / "whole")
    assert whole.returncode == 0, _why(whole)
    rows = (tmp_path / "whole/log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6  # one header, one row per iteration: rank 0 alone writes
    assert (tmp_path / "whole/final.json").is_file()
    first = _torchrun(tiny_dataset, tmp_path / "split", "--stop-at", "3")
    assert first.returncode == 0, _why(first)
    assert not (tmp_path / "split/final.json").exists()
    second = _torchrun(tiny_dataset, tmp_path / "split", "--resume")
    assert second.returncode == 0, _why(second)
    a = load_checkpoint(tmp_path / "whole/checkpoints/last.pt")["model"]
    b = load_checkpoint(tmp_path / "split/checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batch_that_does_not_split_is_refused(tiny_dataset, tmp_path):
    run = _torchrun(tiny_dataset, tmp_path / "odd", "--batch-size", "3")
    assert run.returncode != 0
    assert "does not split evenly over 2 processes" in run.stderr
    # A one-line error from each process; the only traceback is torchrun's own report.
    assert "src/dmsps" not in run.stderr and "dmsps/training" not in run.stderr


# --- one step on two processes against one process -----------------------------------------
CFG = dict(
    iterations=10,
    batch_size=4,
    patch_size=32,
    val_interval=10,
    features=[4, 8, 16, 32, 64],
    norm="instance",  # per-sample: the shares do not change it (BatchNorm would)
    amp="none",  # exact sums: under bf16 (auto on CPUs with native bf16) the shares round apart
    augment=False,
    device="cpu",
    threads=1,
)


def _global_batch():
    gen = torch.Generator().manual_seed(11)
    image = torch.rand(4, 1, 32, 32, generator=gen)
    scribble = torch.randint(0, 4, (4, 32, 32), generator=gen)  # every pixel annotated
    return image, scribble


class _FixedShare:
    """Returns this process's rows of a fixed global batch (the same for every call)."""

    def __init__(self, rank: int, world: int) -> None:
        image, scribble = _global_batch()
        n = 4 // world
        self.image, self.scribble = (
            image[rank * n : (rank + 1) * n],
            scribble[rank * n : (rank + 1) * n],
        )

    def sample(self, count, gen):
        assert count == self.image.shape[0]
        return self.image, self.scribble, None, None


def _one_step(dataset, rank: int, world: int) -> dict:
    trainer = Trainer(Dataset(dataset), TrainConfig(**CFG), dataset.parent / f"r{rank}", False)
    torch.manual_seed(0)
    model = trainer.build_model()
    for m in model.modules():  # dropout draws differ between one and two processes
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
    opt = trainer.make_optimizer(model)
    step_model = distributed.wrap(model, trainer.device, trainer.dist)
    trainer.set_lr(opt, 0)
    gen = torch.Generator().manual_seed(1)
    trainer.train_step(step_model, opt, _FixedShare(rank, world), gen, 0)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, dataset, port: int, out) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )  # fmt: skip
    weights = _one_step(dataset, rank, 2)
    if rank == 0:
        torch.save(weights, out)
    torch.distributed.destroy_process_group()


def test_one_step_on_two_processes_equals_one_process(tiny_dataset, tmp_path):
    out = tmp_path / "two.pt"
    mp.spawn(_worker, args=(tiny_dataset, _free_port(), out), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    one = _one_step(tiny_dataset, 0, 1)
    start = Trainer(Dataset(tiny_dataset), TrainConfig(**CFG), tmp_path / "s", False)
    torch.manual_seed(0)
    initial = start.build_model().state_dict()
    moved = [k for k in one if one[k].is_floating_point() and not torch.equal(one[k], initial[k])]
    assert moved, "the step changed no weight"
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-6, rtol=1e-5), k


def test_torchrun_runs_the_whole_pipeline_with_rank_0_writing(tiny_dataset, tmp_path):
    sets = []
    for stage in ("stage1", "stage2"):
        for pair in ("iterations=4", "val_interval=2", "patch_size=32", "batch_size=4",
                     "features=4,8,16,32,64", "device=cpu", "threads=1"):  # fmt: skip
            sets += ["--set", f"{stage}.{pair}"]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "dmsps.cli", "run", str(tiny_dataset), "--out", str(tmp_path / "run"),
        "--preset", "demo", "--quiet", *sets,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, _why(done)
    assert done.stdout.count("stage2 on the test split") == 1  # printed by rank 0 only
    for name in ("results.json", "report/index.html", "metrics/stage2/summary.json"):
        assert (tmp_path / "run" / name).is_file(), name

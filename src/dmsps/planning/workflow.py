"""Planning a dataset end to end: fingerprint, step timing on this device, the plan."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from dmsps.config import RunConfig, TrainConfig
from dmsps.data.layout import Dataset
from dmsps.planning.fingerprint import Fingerprint, compute_fingerprint
from dmsps.planning.planner import measure_step, plan
from dmsps.training.trainer import Trainer


def plan_dataset(
    dataset: Path, budget: str, dims: int | None, device: str = "auto", progress: bool = True
) -> tuple[RunConfig, Fingerprint]:
    """The plan for ``dataset`` and the fingerprint it came from; the step time is
    measured on ``device`` with the planned network, patch and batch."""
    ds = Dataset(dataset)
    fp = compute_fingerprint(ds, progress)
    with tempfile.TemporaryDirectory() as tmp:

        def trainer(cfg: TrainConfig) -> Trainer:
            return Trainer(ds, dataclasses.replace(cfg, device=device), Path(tmp), False)

        measured = measure_step(trainer)

        def step_seconds(cfg: TrainConfig) -> float:
            seconds = measured(cfg)
            fp.notes.append(
                f"step time on {device}: {seconds:.2f} s (patch "
                f"{' x '.join(map(str, cfg.patch_size))}, batch {cfg.batch_size}, widths "
                f"{cfg.features[0]}-{cfg.features[-1]})"
            )
            return seconds

        cfg = plan(fp, budget, dims, step_seconds)
    for stage in (cfg.stage1, cfg.stage2):
        stage.device = device
    cfg.check()
    return cfg, fp


def describe(cfg: RunConfig, fp: Fingerprint) -> str:
    """A few lines saying what the plan chose, and from what."""
    s1, s2 = cfg.stage1, cfg.stage2
    lines = [
        f"dataset {fp.name}: {fp.cases} cases, median spacing "
        f"{' x '.join(f'{v:g}' for v in fp.median_spacing)} mm, median shape "
        f"{' x '.join(map(str, fp.median_shape))}, channels "
        f"{', '.join(c.name for c in fp.channels)}",
        f"plan ({cfg.preset}): {s1.spatial_dims}D, "
        + (
            f"slices resized to {s1.patch_size[0]} x {s1.patch_size[1]}"
            if s1.spatial_dims == 2
            else f"target spacing {' x '.join(f'{v:g}' for v in s1.target_spacing)} mm, patch "
            f"{' x '.join(map(str, s1.patch_size))}"
        )
        + f", batch {s1.batch_size}, normalisation {', '.join(s1.normalization)}",
    ]
    if s1.spatial_dims == 3:
        lines.append(
            "kernels "
            + " ".join("x".join(map(str, k)) for k in s1.kernel_sizes)
            + "; pooling "
            + " ".join("x".join(map(str, k)) for k in s1.pool_strides)
        )
    lines.append(
        f"stage 1: {s1.iterations} iterations ({s1.optimizer} lr {s1.lr:g}); stage 2: "
        f"{s2.iterations} iterations"
    )
    lines += fp.notes  # the measured step times the iterations came from
    return "\n".join(lines)

"""Named settings (presets), each with its help line beside it, and ``--preset`` values.

A ``--preset`` value is a preset name, or a settings file: a run's own ``config.json``
reruns that run exactly, and ``dmsps plan`` writes files in the same schema. Why each
preset has the values it has is said beside it (figures: docs/results.md, docs/3d.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dmsps.config import ExpandConfig, RunConfig, TrainConfig, read_settings
from dmsps.errors import DmspsError


@dataclass(frozen=True)
class Preset:
    """A named setting: fixed values (``build``), or a plan made from the dataset at the
    time of the run (``planned``: the budget and dims `dmsps plan` is given)."""

    name: str
    help: str  # one line for --help texts
    build: Callable[[], RunConfig] | None = None
    planned: tuple[str, int] | None = None


def _demo() -> RunConfig:
    """Synthetic 96x96 data at native size; stage 2 with the paper's Adam lr 1e-4."""
    s1 = TrainConfig(
        iterations=600,
        batch_size=8,
        patch_size=[96, 96],
        val_interval=100,
        patience=1000,
        rampup=50,
        log_interval=10,
        lr=0.03,
    )
    s2 = dataclasses.replace(
        s1, optimizer="adam", lr=1e-4, weight_decay=1e-5, iterations=300, rampup=0
    )
    return RunConfig(preset="demo", stage1=s1, stage2=s2)


def _acdc() -> RunConfig:
    """CPU budget for ACDC (see docs/results.md for why these values)."""
    s1 = TrainConfig(
        iterations=4000, batch_size=24, patch_size=[128, 128], lr=0.03, val_interval=200
    )
    # Stage 2 uses annealed SGD, not the paper's constant-lr Adam: at this short budget
    # Adam's last weights lost 0.018 Dice to stage 1 (5 seeds), SGD did not.
    s2 = TrainConfig(
        iterations=1000,
        batch_size=24,
        patch_size=[128, 128],
        val_interval=200,
        optimizer="sgd",
        lr=0.003,
        weight_decay=1e-4,
    )
    # Expansion at normalised entropy < 0.3, not the paper's 0.1: 0.1 left 41 % of the
    # myocardium and 8 % of the background unlabelled, so stage 2 met almost no loss on
    # its seeds; 0.3 put stage 2 at or above stage 1 (docs/results.md, section 3b).
    return RunConfig(preset="acdc", stage1=s1, expand=ExpandConfig(threshold=0.3), stage2=s2)


def _acdc_paper() -> RunConfig:
    """The paper's setting: 256x256, batch 24, 30 000 + 20 000 iterations (GPU)."""
    return RunConfig(preset="acdc-paper")


def _acdc_authors() -> RunConfig:
    """The authors' original 2D scripts (HiLab-git/DMSPS, ``code/train/A_train_*``) at
    the paper's budget (GPU): the published pseudo-label loss H(q, softmax(softmax(z)))
    at weight 8 with no ramp-up; expansion at normalised entropy < 0.1 with uncertain
    pixels as background (``dense``) and the auxiliary decoder's dropout on while
    predicting (their ``F.dropout2d`` stays on in eval mode); stage 2 with the same loss
    and SGD 0.01 with poly decay for 30 000 iterations from stage 1's best weights
    (PyMIC's configuration uses Adam 1e-4 instead, which ``acdc-paper`` follows)."""
    s1 = TrainConfig(rampup=0, pl_loss="authors")
    s2 = dataclasses.replace(s1)
    return RunConfig(
        preset="acdc-authors",
        stage1=s1,
        expand=ExpandConfig(threshold=0.1, target="dense", aux_dropout=True),
        stage2=s2,
    )


#: The authors' 3D network (UNet_CCT_dp_3D): instance norm, ReLU, upsample-and-concatenate
#: decoder, 1x1x1 output convolution.
AUTHORS_3D = dict(spatial_dims=3, norm="instance", activation="relu", join="concat", head_kernel=1)


def _paper_3d(name: str, threshold: float) -> RunConfig:
    """The authors' WORD/BraTS recipe (meant for a GPU): 80 x 96 x 96 patches, batch 1,
    SGD 0.01 with poly decay, 60 000 iterations per stage, validation every 200 with early
    stopping after 10 000 without improvement, no augmentation, no ramp-up; stage 2 with
    the same loss and optimiser from stage 1's best weights. Their original scripts
    label uncertain voxels as background in the stage-2 target (``dense``)."""
    s1 = TrainConfig(
        **AUTHORS_3D,
        patch_size=[80, 96, 96],
        batch_size=1,
        iterations=60000,
        lr=0.01,
        val_interval=200,
        patience=10000,
        augment=False,
        rampup=0,
        annotated_fraction=0.0,  # the authors crop patches uniformly at random
    )
    s2 = dataclasses.replace(s1)
    return RunConfig(
        preset=name, stage1=s1, expand=ExpandConfig(threshold=threshold, target="dense"), stage2=s2
    )


def _acdc_3d() -> RunConfig:
    """ACDC volumes as 3D (real scribbles): the authors' 3D network with Z pooled only at
    the two deepest levels (ACDC slices are 5-10 mm), resampled in-plane to 3 mm so an
    8 x 96 x 96 patch (half centred on a scribble) sees most of a slice, as the 2D
    preset's 128 x 128 input does; batch 2, in-plane augmentation, 1 500 + 400
    iterations: a 2-core CPU budget of about an hour. Adam at lr 0.002 with poly decay
    and a ramp-up over the first 300. At the native ~1.5 mm (a 144 mm window), validation
    Dice was 0.18 after 500 iterations, as with the paper's SGD 0.01 (docs/results.md,
    section 7). The paper's pseudo-label loss form: the authors' over-grew the myocardium
    (stage 1 0.490, Myo 0.09, against 0.610; docs/results.md, section 7)."""
    s1 = TrainConfig(
        **AUTHORS_3D,
        pl_loss="soft-ce",
        z_pooling=2,
        patch_size=[8, 96, 96],
        target_spacing=[0.0, 3.0, 3.0],
        batch_size=2,
        iterations=1500,
        optimizer="adam",
        schedule="poly",
        lr=0.002,
        weight_decay=0.0,
        val_interval=250,
        rampup=300,
        inference_overlap=0.25,
    )
    s2 = dataclasses.replace(s1, iterations=400, lr=0.001, rampup=0)
    return RunConfig(preset="acdc-3d", stage1=s1, expand=ExpandConfig(threshold=0.3), stage2=s2)


def _demo_3d(
    name: str,
    patch: list[int],
    spacing: list[float],
    augment: bool,
    iterations: int,
    pl_weight: float | None = None,
    norm: str = "instance",
    pl_loss: str = "authors",
    rampup_parts: int = 3,
) -> RunConfig:
    """3D demo on synthetic data in minutes on 2 CPU cores: the authors' 3D network at
    half width, Adam (converges in the few hundred iterations a CPU demo affords; the
    paper's SGD needs tens of thousands), a long ramp-up (over the first
    1/``rampup_parts`` of stage 1) so the scribble loss shapes the network before the
    pseudo-label term weighs in. ``norm="batch"`` where the patch is
    pooled to so few voxels that InstanceNorm's per-sample statistics carry no signal."""
    s1 = TrainConfig(
        **(AUTHORS_3D | {"norm": norm}),
        features=[8, 16, 32, 64, 128],
        patch_size=patch,
        target_spacing=spacing,
        batch_size=4,
        iterations=iterations,
        optimizer="adam",
        schedule="poly",
        lr=0.002,
        weight_decay=0.0,
        rampup=iterations // rampup_parts,
        val_interval=iterations // 6,
        patience=10000,
        augment=augment,
        inference_overlap=0.25,
        pl_weight=pl_weight,
        pl_loss=pl_loss,
    )
    s2 = dataclasses.replace(
        s1, iterations=iterations // 3, lr=0.001, rampup=0, val_interval=iterations // 6
    )
    return RunConfig(preset=name, stage1=s1, expand=ExpandConfig(threshold=0.3), stage2=s2)


def _demo_abdomen() -> RunConfig:
    """Abdomen: pseudo-label weight 2, not the paper's 8 (0.670 -> 0.731 against
    0.602 -> 0.680); BatchNorm, not InstanceNorm, since 16 x 48 x 48 pools to 1 x 3 x 3
    (0.732 -> 0.738 against 0.670 -> 0.731); 6 mm voxels, not 8, for the small organs
    (0.767 -> 0.771 in 10.5 min against 0.732 -> 0.738 in 8.8 min); the ramp-up over
    half of stage 1, not a third, since with a third the pseudo-labels locked the spleen
    out in some runs; 2 000 + 666 iterations (on venous CT, the demo's default: 0.804 in
    11.8 min bf16, 0.800 in 12.9 min fp32; 1 500 + 500 gave 0.799; docs/3d.md)."""
    return _demo_3d(
        "demo-abdomen",
        [16, 48, 48],
        [6.0, 6.0, 6.0],
        False,
        2000,
        pl_weight=2.0,
        norm="batch",
        rampup_parts=2,
    )


def _demo_brain() -> RunConfig:
    """Four MRI sequences at 3 mm cost 2.5x the abdomen's step: fewer iterations (600 +
    200 left stage 2 at 0.787; 800 + 266 reached 0.801 in 13.6 min). The paper's
    pseudo-label loss form: the authors' over-grew the edema here (stage 2 0.590 at
    weight 8 and 0.568 at weight 2, against 0.807; docs/3d.md). Predictions keep each
    class's largest component: on other synthetic data (`--seed 1` / `2`) stray blobs
    cost 0.009 / 0.031 (0.881 -> 0.891, 0.772 -> 0.803), on the default data nothing
    (0.807)."""
    return dataclasses.replace(
        _demo_3d("demo-brain", [32, 48, 48], [], True, 800, pl_loss="soft-ce"),
        largest_component=True,
    )


#: Every preset, in the order --help lists them.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("demo", "synthetic 2D cardiac data, CPU minutes", _demo),
        Preset(
            "demo-abdomen",
            "synthetic 3D abdominal CT (dmsps demo --task abdomen)",
            _demo_abdomen,
        ),
        Preset(
            "demo-brain", "synthetic 3D brain-tumour MRI (dmsps demo --task brain)", _demo_brain
        ),
        Preset("acdc", "ACDC, CPU budget: 128 x 128 slices, 4 000 + 1 000 iterations", _acdc),
        Preset(
            "acdc-paper",
            "ACDC, the paper's 256 x 256, batch 24, 30 000 + 20 000 iterations (GPU)",
            _acdc_paper,
        ),
        Preset(
            "acdc-authors",
            "ACDC, the authors' original scripts: published loss form, no ramp-up, dense "
            "stage-2 target, aux dropout at expansion, stage 2 SGD 0.01 for 30 000 "
            "iterations (GPU)",
            _acdc_authors,
        ),
        Preset("acdc-3d", "ACDC volumes in 3D, CPU budget", _acdc_3d),
        Preset(
            "word",
            "WORD CT, the paper's 3D setting: 80 x 96 x 96 patches, 60 000 + 60 000 (GPU)",
            lambda: _paper_3d("word", 0.3),
        ),
        Preset(
            "word-cpu",
            "WORD CT, planned from the dataset for about an hour of training on this CPU "
            "(as --preset auto --dims 3)",
            planned=("cpu-1h", 3),
        ),
        Preset(
            "brats", "BraTS 2020, the paper's 3D setting (GPU)", lambda: _paper_3d("brats", 0.4)
        ),
        Preset(
            "brats-cpu",
            "BraTS 2020, planned from the dataset for about an hour of training on this CPU "
            "(as --preset auto --dims 3)",
            planned=("cpu-1h", 3),
        ),
    )
}

#: What ``--preset auto`` does, for --help texts and the annotation page.
AUTO_HELP = "plan the settings for this dataset when the run starts (dmsps plan)"

#: What --help says a --preset value may be, besides the names.
FILE_HELP = "or a settings file (a run's config.json reruns that run; `dmsps plan` writes one)"


def preset_help() -> str:
    """One line per preset, generated from PRESETS, for --help texts."""
    names = "; ".join(f"{p.name}: {p.help}" for p in PRESETS.values())
    return f"{names}; {FILE_HELP}; or auto: {AUTO_HELP}"


def is_planned(value: str | Path) -> bool:
    """Whether a ``--preset`` value is planned from the dataset: ``auto`` and the
    planned presets."""
    named = PRESETS.get(str(value))
    return value == "auto" or (named is not None and named.planned is not None)


def is_settings_file(value: str | Path) -> bool:
    value = str(value)
    return value.endswith(".json") or Path(value).is_file()


@dataclass(frozen=True)
class PlanContext:
    """What a planned preset (or ``auto``) is planned from, and where the plan is kept:
    ``out/plan.json`` (with ``out/fingerprint.json``), reused when the run resumes
    rather than timing a step again, which could change the iterations."""

    dataset: Path
    out: Path
    device: str = "auto"
    progress: bool = True
    budget: str = "cpu-1h"  # for auto; a planned preset names its own
    dims: int | None = None


def preset(value: str | Path, plan_for: PlanContext | None = None) -> RunConfig:
    """The settings a ``--preset`` value names: a preset, a saved RunConfig file, or a plan
    for ``plan_for``'s dataset (``auto`` and the planned presets)."""
    if is_settings_file(value):
        cfg = read_settings(value)
        if not isinstance(cfg, RunConfig):
            raise DmspsError(
                f"{value}: holds one stage's settings; give a run's config.json (or use it "
                "with `dmsps train --preset`)"
            )
        return cfg
    if value != "auto" and value not in PRESETS:
        raise DmspsError(
            f"unknown preset '{value}' (choose from {', '.join(PRESETS)}, or give a settings file)"
        )
    named = PRESETS.get(str(value))
    if named is not None and named.build is not None:
        return named.build()
    if plan_for is None:
        raise DmspsError(
            f"preset '{value}' is planned from the dataset when a run starts: use it with "
            f"`dmsps run DATA --preset {value}` (or train, compare), or plan it first with "
            "`dmsps plan DATA` and give the file"
        )
    if named is None:  # auto
        return _planned(None, plan_for.budget, plan_for.dims, plan_for)
    budget, dims = named.planned
    return _planned(named.name, budget, dims, plan_for)


def _planned(name: str | None, budget: str, dims: int | None, ctx: PlanContext) -> RunConfig:
    from dmsps.io.atomic import write_json

    saved = ctx.out / "plan.json"
    if saved.is_file():  # a resumed run keeps the plan it started with
        cfg = read_settings(saved)
        if name is not None and getattr(cfg, "preset", None) != name:
            raise DmspsError(
                f"{saved}: this folder holds a plan for '{getattr(cfg, 'preset', '?')}', not "
                f"'{name}'; use a new --out folder"
            )
        return cfg
    from dmsps.planning.workflow import describe, plan_dataset

    cfg, fingerprint = plan_dataset(ctx.dataset, budget, dims, ctx.device, ctx.progress)
    if name is not None:
        fingerprint.notes.append(f"preset {name}: planned as {cfg.preset}")
        cfg.preset = name
    if ctx.progress:
        print(describe(cfg, fingerprint))
    write_json(ctx.out / "fingerprint.json", fingerprint.to_dict())
    write_json(saved, cfg.to_dict())
    return cfg


def stage_settings(
    value: str | Path, stage: int, plan_for: PlanContext | None = None
) -> TrainConfig:
    """One stage's settings from a ``--preset`` value: a preset or run config (its
    stage ``stage``), or a stage folder's own config.json."""
    if is_settings_file(value):
        cfg = read_settings(value)
        if isinstance(cfg, TrainConfig):
            return cfg
        return cfg.stage1 if stage == 1 else cfg.stage2
    run = preset(value, plan_for)
    return run.stage1 if stage == 1 else run.stage2

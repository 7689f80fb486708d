"""From a dataset's fingerprint to a run's settings, by written rules (docs/3d.md).

Like nnU-Net's experiment planner: the target spacing, patch size, per-level kernels and
pooling strides follow from the data's spacing and size; unlike it, the budget is a
time (``cpu-1h``, ``gpu-1h``) or the paper's iterations (``paper``), and the number of
iterations comes from a step time measured on this device with the planned network.
The result is a ``RunConfig``: the schema of a run's ``config.json``, so `dmsps run
--preset plan.json` runs it and a run's own file reruns it.

Every rule is deterministic given the fingerprint and the step time.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from dmsps.config import ExpandConfig, RunConfig, TrainConfig
from dmsps.data import normalization
from dmsps.errors import DmspsError
from dmsps.planning.fingerprint import Fingerprint

#: Slice spacing above this multiple of the in-plane spacing makes a dataset
#: anisotropic (nnU-Net's threshold).
ANISOTROPY = 3.0
#: Within a level, an axis whose spacing exceeds this multiple of the finest one gets a
#: kernel of 1 and is not pooled (nnU-Net's rule: 1x3x3 and 1x2x2 on thick slices).
LEVEL_RATIO = 2.0
#: An axis is pooled only while it keeps at least this many voxels after pooling.
MIN_FEATURE = 4
#: Anisotropic stacks of at most this many slices are planned as 2D slices when --dims
#: is not given: each volume is a short stack of 2D images (ACDC: 6-18 slices).
MAX_STACK_SLICES = 32
#: 3D patches of such short stacks take this many slices (a slab), and a batch of as
#: many slabs as give the 2D plan's slices a step: more cases a step for the same work.
#: On ACDC-3D with dense labels, 6 slabs of 4 slices beat 2 whole hearts of 10 slices by
#: 0.06 Dice at 500 steps (docs/results.md, section 12.2, suspect H).
SLAB_SLICES = 4
#: Network levels and widths (the authors' [16, 32, 64, 128, 256]).
FEATURES = [16, 32, 64, 128, 256]
#: Share of a budget's time for stage 1 (the rest trains stage 2), and the part of each
#: stage's time left for validation and checkpoints.
STAGE1_SHARE = 0.8
VALIDATION_SHARE = 0.1
#: A time budget that affords fewer stage-1 iterations than this with the full widths
#: trains a network of half the widths instead (about 3x faster a step on a CPU): a
#: few hundred steps leave a scribble-supervised network far from converged.
MIN_STAGE1_ITERATIONS = 2000
#: A 3D budget that affords fewer stage-1 iterations than this even at half widths
#: plans a smaller patch (and coarser spacing) sized for ``MIN_STAGE1_ITERATIONS``: a
#: quarter-hour CPU budget left the whole-case patch of the abdominal demo 50 steps.
FEW_STAGE1_ITERATIONS = 1000
#: The smallest 3D patch (voxels per sample) that rule plans.
MIN_PATCH_VOXELS = 16 * 32 * 32


@dataclass(frozen=True)
class Budget:
    name: str
    help: str
    seconds: float  # training time of both stages; 0 = fixed iterations (paper)
    patch_voxels: int  # 3D patch size limit (voxels, per sample)
    inplane: int  # the median field of view fits this many voxels in-plane (3D)
    slice_size: int  # 2D: slices are resized to this
    batch_2d: int
    batch_3d: int


BUDGETS = {
    b.name: b
    for b in (
        Budget("cpu-1h", "about an hour of training on this CPU", 3600, 163840, 128, 128, 24, 2),
        Budget("gpu-1h", "about an hour of training on this GPU", 3600, 1 << 20, 192, 256, 24, 2),
        Budget("paper", "the paper's iterations (GPU)", 0, 80 * 96 * 96, 512, 256, 24, 1),
    )
}


def get_budget(name: str) -> Budget:
    """A named budget, or ``cpu-<N>m`` / ``gpu-<N>h`` ...: that device kind's budget with
    another time (``cpu-15m``: a quarter of ``cpu-1h``)."""
    if name in BUDGETS:
        return BUDGETS[name]
    found = re.fullmatch(r"(cpu|gpu)-(\d+(?:\.\d+)?)(m|h)", name)
    if not found or float(found.group(2)) <= 0:
        raise DmspsError(
            f"unknown budget '{name}' (choose from {', '.join(BUDGETS)}, or cpu-<N>m, "
            "gpu-<N>h ... for another time)"
        )
    kind, amount, unit = found.groups()
    seconds = float(amount) * (60 if unit == "m" else 3600)
    base = BUDGETS[f"{kind}-1h"]
    return replace(base, name=name, help=f"{amount}{unit} of training", seconds=seconds)


@dataclass
class Topology:
    kernel_sizes: list[list[int]]
    pool_strides: list[list[int]]

    @property
    def multiples(self) -> list[int]:
        out = [1] * len(self.kernel_sizes[0])
        for s in self.pool_strides:
            out = [a * b for a, b in zip(out, s, strict=True)]
        return out


def topology(spacing: list[float], patch: list[int], levels: int = len(FEATURES)) -> Topology:
    """Kernels and pooling strides per level for ``patch`` voxels of ``spacing`` mm.

    At each level an axis whose spacing is more than LEVEL_RATIO times the finest axis's
    gets kernel 1 and is not pooled (the slice axis of thick-slice data, until the
    in-plane axes have been pooled up to it); once an axis has had kernel 3 it keeps it.
    The others are pooled by 2 while at least MIN_FEATURE voxels remain; pooling doubles
    an axis's spacing and halves its size. Fewer levels when no axis can be pooled.
    """
    s, n = [float(v) for v in spacing], [int(v) for v in patch]
    kernels: list[list[int]] = []
    strides: list[list[int]] = []
    for level in range(levels):
        fine = min(s)
        near = [v <= LEVEL_RATIO * fine for v in s]
        kept = kernels[-1] if kernels else [1] * len(s)
        kernels.append([3 if ok or k == 3 else 1 for ok, k in zip(near, kept, strict=True)])
        if level == levels - 1:
            break
        stride = [
            2 if ok and size // 2 >= MIN_FEATURE else 1 for ok, size in zip(near, n, strict=True)
        ]
        if 2 not in stride:  # this level is the deepest
            break
        strides.append(stride)
        s = [v * k for v, k in zip(s, stride, strict=True)]
        n = [size // k for size, k in zip(n, stride, strict=True)]
    return Topology(kernels, strides)


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def target_spacing(fp: Fingerprint, budget: Budget) -> list[float]:
    """The median spacing, coarsened in-plane so that the median field of view fits
    ``budget.inplane`` voxels, and further (all axes finer than the slice spacing alike)
    until a median case holds at most 4 patches' worth of voxels. Thick slices are never
    resampled finer; an isotropic axis follows the in-plane spacing."""
    med = fp.median_spacing
    extent = fp.median_extent_mm
    inplane = max(min(med[1], med[2]), max(extent[1], extent[2]) / budget.inplane)
    anisotropic = med[0] > ANISOTROPY * min(med[1], med[2])
    z = med[0] if anisotropic else max(med[0], inplane)
    spacing = [z, inplane, inplane]
    limit = 4 * budget.patch_voxels
    for _ in range(64):
        voxels = math.prod(e / s for e, s in zip(extent, spacing, strict=True))
        if voxels <= limit:
            break
        finest = min(spacing)
        # Coarsen every axis that is not already coarser than the others (thick slices
        # stay as they are until the in-plane spacing catches up).
        spacing = [s * 1.1 if s <= LEVEL_RATIO * finest else s for s in spacing]
    return [round(s, 3) for s in spacing]


def patch_size(fp: Fingerprint, spacing: list[float], budget: Budget) -> tuple[list[int], Topology]:
    """The median case's shape at ``spacing``, rounded up to the network's multiples, then
    shrunk (the axis longest in mm first) until it fits ``budget.patch_voxels``."""
    extent = fp.median_extent_mm
    median = [max(MIN_FEATURE, round(e / s)) for e, s in zip(extent, spacing, strict=True)]
    patch = list(median)
    for _ in range(256):
        topo = topology(spacing, patch)
        rounded = [_round_up(p, m) for p, m in zip(patch, topo.multiples, strict=True)]
        if math.prod(rounded) <= budget.patch_voxels:
            return rounded, topology(spacing, rounded)
        # Shrink the axis that covers the most of the median case (ties: the longest in
        # mm), as nnU-Net does, so the patch keeps the case's proportions.
        share = [r / full for r, full in zip(rounded, median, strict=True)]
        mm = [r * s for r, s in zip(rounded, spacing, strict=True)]
        axis = max(range(len(patch)), key=lambda a: (round(share[a], 6), mm[a]))
        patch[axis] = max(MIN_FEATURE, rounded[axis] - topo.multiples[axis])
    raise DmspsError("no patch size fits the budget")  # pragma: no cover - a safety stop


def _normalization(fp: Fingerprint) -> list[str]:
    """Each channel's scheme as the dataset resolves it, except that a CT window is set
    to the 0.5th-99.5th percentiles of the labelled voxels' HU (rounded to 10 HU), as
    nnU-Net clips CT to its foreground's range."""
    out = []
    for spec, stats in zip(fp.normalization, fp.channels, strict=True):
        if normalization.parse(spec).scheme == "ct-window":
            low, high = round(stats.p005, -1), round(stats.p995, -1)
            spec = f"ct-window:{low:g}:{high:g}" if low < high else spec
        out.append(spec)
    return out


def _is_ct(fp: Fingerprint) -> bool:
    return any(normalization.parse(s).scheme == "ct-window" for s in fp.normalization)


def choose_dims(fp: Fingerprint, dims: int | None) -> int:
    """2 for short stacks of thick slices (ACDC), else 3; ``dims`` overrides."""
    if dims is not None:
        if dims not in (2, 3):
            raise DmspsError(f"--dims must be 2 or 3, got {dims}")
        return dims
    return 2 if _short_stack(fp) else 3


def _short_stack(fp: Fingerprint) -> bool:
    """A few thick slices a case (ACDC: 6-18 slices of 5-10 mm): what `choose_dims`
    plans as 2D when ``--dims`` is not given."""
    med = fp.median_spacing
    anisotropic = med[0] > ANISOTROPY * min(med[1], med[2])
    return anisotropic and fp.median_shape[0] <= MAX_STACK_SLICES


def _slabs(fp: Fingerprint, patch: list[int], topo: Topology, b: Budget) -> tuple[list[int], int]:
    """Patch and batch size: on short stacks, slabs of SLAB_SLICES slices (rounded up to
    the network's Z multiple) in a batch that holds the 2D plan's slices a step; the
    kernels and pooling stay those planned for the whole stack. Else unchanged."""
    depth = _round_up(SLAB_SLICES, topo.multiples[0])
    if not _short_stack(fp) or patch[0] <= depth:
        return patch, b.batch_3d
    return [depth, *patch[1:]], max(b.batch_3d, math.ceil(b.batch_2d / depth))


def _network_3d(fp: Fingerprint, b: Budget) -> TrainConfig:
    """Stage-1 settings of a 3D plan before its schedule: spacing, patch, topology."""
    spacing = target_spacing(fp, b) if b.seconds else fp.median_spacing
    patch, topo = patch_size(fp, spacing, b)
    patch, batch = _slabs(fp, patch, topo, b)
    smallest = min(fp.class_fractions[1:], default=1.0)
    return TrainConfig(
        spatial_dims=3,
        features=list(FEATURES[: len(topo.kernel_sizes)]),
        kernel_sizes=topo.kernel_sizes,
        pool_strides=topo.pool_strides,
        norm="batch",
        activation="leakyrelu",
        join="concat",
        head_kernel=1,
        patch_size=patch,
        target_spacing=spacing,
        batch_size=batch,
        # Classes under 0.5 % of a case's voxels are rarely met by patches centred on
        # any scribbled voxel: centre on a scribbled class first.
        centring="class" if smallest < 0.005 else "voxel",
        # Flips and quarter turns swap left and right: off where organs are lateralised
        # (CT of the trunk), on for brain and heart MRI.
        augment=not _is_ct(fp),
        inference_overlap=0.25 if b.seconds else 0.5,
        # Short budgets: Adam converges in the few thousand steps they allow; the
        # paper's budget keeps the authors' SGD 0.01.
        **(
            dict(optimizer="adam", schedule="poly", lr=0.002, weight_decay=0.0)
            if b.seconds
            else dict(rampup=0)
        ),
    )


def plan(
    fp: Fingerprint,
    budget: str = "cpu-1h",
    dims: int | None = None,
    step_seconds: Callable[[TrainConfig], float] | None = None,
) -> RunConfig:
    """The planned run for ``fp``. ``step_seconds(stage1_settings)`` gives the seconds of
    one training step on this device (``measure_step``); a time budget needs it."""
    b = get_budget(budget)
    d = choose_dims(fp, dims)
    if d == 2:
        s1 = TrainConfig(
            spatial_dims=2,
            patch_size=[b.slice_size, b.slice_size],
            batch_size=b.batch_2d,
            lr=0.03 if b.seconds else 0.01,
        )
    else:
        s1 = _network_3d(fp, b)
    s1 = replace(s1, normalization=_normalization(fp))
    name = f"plan:{budget}:{d}d"
    if not b.seconds:  # the paper's schedule: 2D as acdc-paper, 3D as word/brats
        n1, n2 = (30000, 20000) if d == 2 else (60000, 60000)
        s1 = replace(s1, iterations=n1, val_interval=200)
        s2 = replace(s1, iterations=n2)
        if d == 2:
            s2 = replace(s2, optimizer="adam", lr=1e-4, weight_decay=1e-5)
        return RunConfig(preset=name, stage1=s1, stage2=s2)
    if step_seconds is None:
        raise DmspsError(f"budget {budget} needs a measured step time")
    usable = b.seconds * (1 - VALIDATION_SHARE)

    def affords(share: float) -> float:  # iterations a share of the budget affords now
        return usable * share / step

    step = _step(step_seconds, s1)
    if affords(STAGE1_SHARE) < MIN_STAGE1_ITERATIONS:
        s1 = replace(s1, features=[f // 2 for f in s1.features])
        step = _step(step_seconds, s1)
    stage1_steps = affords(STAGE1_SHARE)
    if d == 3 and stage1_steps < FEW_STAGE1_ITERATIONS and b.patch_voxels > MIN_PATCH_VOXELS:
        # A step's time grows about in proportion to the patch's voxels: size the patch
        # limit for MIN_STAGE1_ITERATIONS and plan spacing and patch again with it.
        voxels = math.prod(s1.patch_size) * stage1_steps / MIN_STAGE1_ITERATIONS
        small = replace(b, patch_voxels=max(MIN_PATCH_VOXELS, int(voxels)))
        scale = s1.features[0] / FEATURES[0]  # the widths chosen above
        again = _network_3d(fp, small)
        widths = [int(f * scale) for f in again.features]
        s1 = replace(again, normalization=s1.normalization, features=widths)
        step = _step(step_seconds, s1)
    n1 = max(50, int(affords(STAGE1_SHARE)) // 50 * 50)
    n2 = max(50, int(affords(1 - STAGE1_SHARE)) // 50 * 50)
    # Validation six times a stage; the pseudo-label weight ramps up over a third of
    # stage 1, so the scribbles shape the network first (the 3D demos, docs/3d.md).
    s1 = replace(s1, iterations=n1, val_interval=max(10, n1 // 6), rampup=n1 // 3)
    lr2 = s1.lr / 2 if s1.optimizer == "adam" else s1.lr / 10
    s2 = replace(s1, iterations=n2, val_interval=max(10, n2 // 2), rampup=0, lr=lr2)
    # Expansion at normalised entropy < 0.3: 0.1 left most of the myocardium unlabelled
    # on ACDC (docs/results.md, section 3b).
    return RunConfig(preset=name, stage1=s1, expand=ExpandConfig(threshold=0.3), stage2=s2)


def _step(step_seconds: Callable[[TrainConfig], float], cfg: TrainConfig) -> float:
    step = float(step_seconds(cfg))
    if not step > 0:
        raise DmspsError(f"measured step time {step} s is not positive")
    return step


def measure_step(
    trainer_factory: Callable[[TrainConfig], object], steps: int = 4, warmup: int = 2
) -> Callable[[TrainConfig], float]:
    """``step_seconds`` for ``plan``: times ``steps`` training steps (after ``warmup``)
    of the planned network on random data of the planned patch and batch, through the
    training loop's own ``train_step`` (``trainer_factory(cfg)`` builds that Trainer)."""

    def seconds(cfg: TrainConfig) -> float:
        trainer = trainer_factory(cfg)
        model = trainer.build_model()  # type: ignore[attr-defined]
        opt = trainer.make_optimizer(model)  # type: ignore[attr-defined]
        sampler = RandomPatches(
            list(cfg.patch_size),
            trainer.ds.num_channels,  # type: ignore[attr-defined]
            trainer.num_classes,  # type: ignore[attr-defined]
            trainer.device,  # type: ignore[attr-defined]
        )
        gen = torch.Generator().manual_seed(0)
        model.train()
        for it in range(warmup):
            trainer.train_step(model, opt, sampler, gen, it)  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        for it in range(steps):
            trainer.train_step(model, opt, sampler, gen, warmup + it)  # type: ignore[attr-defined]
        return (time.perf_counter() - t0) / steps

    return seconds


class RandomPatches:
    """A Sampler of random images and scribbles of one patch size (for timing only)."""

    def __init__(self, patch: list[int], channels: int, classes: int, device) -> None:
        self.patch, self.channels, self.classes, self.device = patch, channels, classes, device

    def __len__(self) -> int:
        return 1

    def sample(self, batch: int, generator: torch.Generator):
        image = torch.randn((batch, self.channels, *self.patch), generator=generator)
        scrib = torch.randint(0, self.classes + 1, (batch, *self.patch), generator=generator)
        return image.to(self.device), scrib.to(self.device), None, None

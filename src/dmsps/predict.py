"""Inference on NIfTI images: label maps (and uncertainty maps) with the input geometry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dmsps.data.layout import Dataset
from dmsps.data.normalize import normalise
from dmsps.errors import DataError, DmspsError
from dmsps.infer import labels, normalised_entropy, predict_volume
from dmsps.io.nifti import NIFTI_ENDINGS, is_nifti, load_volume, save_volume, strip_ending
from dmsps.io.paths import is_within
from dmsps.models.fold import fold_batchnorm
from dmsps.postprocess import largest_component_per_class
from dmsps.train.checkpoint import load_checkpoint, model_from_checkpoint


@dataclass
class InputCase:
    case: str
    channels: list[Path]


def find_inputs(source: Path, in_channels: int, split: str = "test") -> list[InputCase]:
    """Cases from a dataset folder (its ``split``), a folder of NIfTIs, or one NIfTI file.

    In a plain folder, ``NAME_0000.nii.gz``, ``NAME_0001.nii.gz``... are channels of case
    NAME; a file without such a suffix is a single-channel case.
    """
    if source.is_file():
        if in_channels != 1:
            raise DmspsError(f"{source}: the model needs {in_channels} channels; pass a folder")
        return [InputCase(strip_ending(source.name), [source])]
    if not source.is_dir():
        raise DmspsError(f"{source}: no such file or folder")
    if (source / "dataset.json").is_file():
        ds = Dataset(source)
        if ds.num_channels != in_channels:
            raise DmspsError(
                f"{source}: dataset has {ds.num_channels} channels, the model needs {in_channels}"
            )
        cases = ds.split(split)
        if not cases:
            raise DmspsError(f"{source}: split '{split}' has no cases")
        return [InputCase(c, ds.paths(c).images) for c in cases]
    files = sorted(p for p in source.iterdir() if is_nifti(p))
    if not files:
        raise DmspsError(f"{source}: no NIfTI files (.nii/.nii.gz) found")
    groups: dict[str, dict[int, Path]] = {}
    for p in files:
        stem = strip_ending(p.name)
        head, _, tail = stem.rpartition("_")
        if head and len(tail) == 4 and tail.isdigit():
            groups.setdefault(head, {})[int(tail)] = p
        else:
            groups.setdefault(stem, {})[0] = p
    out = []
    for case, chans in sorted(groups.items()):
        if sorted(chans) != list(range(in_channels)):
            raise DataError(
                next(iter(chans.values())),
                f"case '{case}' has channels {sorted(chans)}, the model needs 0..{in_channels - 1}",
            )
        out.append(InputCase(case, [chans[i] for i in range(in_channels)]))
    return out


def load_input(case: InputCase):
    arrays, geom = [], None
    for p in case.channels:
        arr, g = load_volume(p)
        if not np.isfinite(arr).all():
            raise DataError(p, "image contains NaN or Inf values")
        if geom is not None and not geom.same_grid(g):
            raise DataError(p, f"grid {g.shape} differs from channel 0 {geom.shape}")
        geom = geom or g
        arrays.append(arr)
    return np.stack(arrays), geom


def predict_folder(
    checkpoint: Path,
    source: Path,
    out: Path,
    uncertainty: bool = False,
    split: str = "test",
    device: str = "auto",
    progress: bool = True,
    overwrite: bool = False,
    largest_component: bool = False,
) -> list[Path]:
    """Predict every case; existing outputs are kept (resume) unless ``overwrite``.

    ``largest_component`` keeps each class's largest 3D component (see dmsps.postprocess).
    """
    from dmsps.train.loop import resolve_amp, resolve_device

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt["meta"]
    cases = find_inputs(source, int(meta["model"]["in_channels"]), split)
    src_dir = (source if source.is_dir() else source.parent).resolve()
    if is_within(out, src_dir):
        raise DmspsError(f"{out}: refusing to write into the input folder {src_dir}")
    dev = resolve_device(device)
    amp = resolve_amp("auto", dev)
    model = fold_batchnorm(model_from_checkpoint(ckpt).to(dev), channels_last=True)
    size = int(meta["patch_size"])
    num_classes = int(meta["model"]["num_classes"])
    ending = NIFTI_ENDINGS[0]
    written = []
    for case in tqdm(cases, desc="predicting", disable=not progress):
        target = out / f"{case.case}{ending}"
        unc_target = out / "uncertainty" / f"{case.case}{ending}"
        if target.is_file() and (not uncertainty or unc_target.is_file()) and not overwrite:
            written.append(target)
            continue
        image, geom = load_input(case)
        image = normalise(image)
        if uncertainty:
            main, mean = predict_volume(
                model, image, size, dev, mode="both", amp_dtype=amp, channels_last=True
            )
            save_volume(unc_target, normalised_entropy(mean).numpy(), geom, np.float32)
        else:
            main = predict_volume(model, image, size, dev, amp_dtype=amp, channels_last=True)
        label_map = labels(main).numpy()
        if largest_component:
            label_map = largest_component_per_class(label_map, num_classes, fill=0)
        save_volume(target, label_map, geom, np.uint8)
        written.append(target)
    return written

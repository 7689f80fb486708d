"""Inference on NIfTI images: label maps (and uncertainty maps) with the input geometry.

Everything about how to run a model comes from its checkpoint: the channels it expects,
each channel's normalisation, the crop it was trained with, and the inferer (resized
slices or sliding window) with its settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmsps.data import normalization
from dmsps.data.cache import preprocess, resample
from dmsps.data.layout import (
    LABEL_SUFFIXES,
    SCRIBBLE_SUFFIXES,
    Dataset,
    load_channels,
    split_channel,
)
from dmsps.device import resolve_amp, resolve_device
from dmsps.errors import DataError, DmspsError, listing
from dmsps.inference.inferers import Inferer, inference_settings, make_inferer
from dmsps.inference.postprocess import largest_component_per_class
from dmsps.inference.uncertainty import label_map, normalised_entropy
from dmsps.io.atomic import remove_temporaries
from dmsps.io.nifti import NIFTI_ENDINGS, is_nifti, save_volume, strip_ending
from dmsps.io.paths import is_within
from dmsps.models.checkpoint import load_checkpoint, model_from_checkpoint
from dmsps.progress import progress_bar


@dataclass
class InputCase:
    case: str
    channels: list[Path]


def find_inputs(
    source: Path, in_channels: int, split: str = "test", channel_names: Sequence[str] = ()
) -> list[InputCase]:
    """Cases from a dataset folder (its ``split``), a folder of NIfTIs, or one NIfTI file.

    In a plain folder, ``NAME_0000.nii.gz``, ``NAME_0001.nii.gz``... are channels of case
    NAME, and so are ``NAME_<channel name>`` files named after the model's channels (as
    BraTS releases name them: ``NAME_t1``, ``NAME_t1ce``, ``NAME_t2``, ``NAME_flair``); a
    file without such a suffix is a single-channel case. A folder holding no NIfTI but
    one folder per case (the BraTS layout) is read one level down.
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
                f"{source}: dataset has {ds.num_channels} channels, the model takes "
                f"{in_channels}; use a checkpoint trained on this dataset's channels"
            )
        cases = ds.split(split)
        if not cases:
            raise DmspsError(f"{source}: split '{split}' has no cases")
        return [InputCase(c, ds.paths(c).images) for c in cases]
    files = _nifti_files(source) or _case_folder_files(source)
    by_name = {name.lower(): i for i, name in enumerate(channel_names)}
    groups: dict[str, dict[int, Path]] = {}
    for p in files:
        stem = strip_ending(p.name)
        case, channel = split_channel(stem)
        head, _, tail = stem.rpartition("_")
        if channel is None and head and by_name and in_channels > 1:
            if f"_{tail.lower()}" in LABEL_SUFFIXES + SCRIBBLE_SUFFIXES:
                continue  # a label or scribble beside the images (BraTS's _seg)
            if tail.lower() in by_name:
                case, channel = head, by_name[tail.lower()]
        chans = groups.setdefault(case, {})
        index = 0 if channel is None else channel
        if index in chans:
            raise DataError(p, f"ambiguous: {chans[index]} is also channel {index} of '{case}'")
        chans[index] = p
    out = []
    expected = "_0000" if in_channels == 1 else f"_0000.._{in_channels - 1:04d}"
    if channel_names and in_channels > 1:
        expected += " or " + ", ".join(f"_{n}" for n in channel_names)
    for case, chans in sorted(groups.items()):
        if sorted(chans) != list(range(in_channels)):
            raise DataError(
                next(iter(chans.values())),
                f"case '{case}' has channels {sorted(chans)}, the model takes {in_channels} "
                f"({expected}); give one file per channel the model was trained on, or use a "
                "checkpoint trained on these channels",
            )
        out.append(InputCase(case, [chans[i] for i in range(in_channels)]))
    return out


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_nifti(p) and not p.name.startswith("."))


def _case_folder_files(source: Path) -> list[Path]:
    """The files of a folder of case folders, named like the case folder (BraTS's
    ``BraTS20_Validation_001/BraTS20_Validation_001_t1.nii.gz``; others, such as the
    training release's one misnamed seg file, are left out). Other subfolders (a
    release's imagesTs/ and labelsTs/) are not guessed at: images and labels would mix."""
    listed = ((d.name, _nifti_files(d)) for d in sorted(source.iterdir()) if d.is_dir())
    folders = {name: files for name, files in listed if files}  # each folder listed once
    if not folders:
        raise DmspsError(f"{source}: no NIfTI files (.nii/.nii.gz) found")
    own = {name: [f for f in files if f.name.startswith(name)] for name, files in folders.items()}
    if not all(own.values()):
        shown = listing(folders, 4)
        raise DmspsError(
            f"{source}: no NIfTI files here, but its folders {shown} hold some; pass the "
            "folder of images to predict (folders of one case each, named like their files "
            "as in BraTS, are read together)"
        )
    return [f for files in own.values() for f in files]


class Predictor:
    """A loaded checkpoint ready to segment (C, Z, Y, X) images: the model, its
    normalisation and crop, and its inferer."""

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "auto",
        amp: str = "auto",
        progress: bool = False,
        **inferer_overrides: Any,
    ) -> None:
        self.path = Path(checkpoint)
        onnx_net = None
        if self.path.suffix == ".onnx":  # an exported model: its metadata travels inside
            from dmsps.models.export import OnnxNet

            onnx_net = OnnxNet(self.path)
            ckpt = {"meta": onnx_net.meta}
        else:
            ckpt = load_checkpoint(self.path)
        self.exported = onnx_net is not None
        self.meta = meta = ckpt["meta"]
        self.in_channels = int(meta["model"]["in_channels"])
        self.num_classes = int(meta["model"]["num_classes"])
        self.class_names = list(meta.get("class_names", []))
        self.schemes = normalization.from_checkpoint(meta, self.in_channels)
        self.crop_nonzero = bool(meta.get("crop_nonzero", False))
        self.target_spacing = list(meta.get("target_spacing") or [])
        dev = resolve_device(device)
        self.inferer: Inferer = make_inferer(
            inference_settings(meta),
            dev,
            resolve_amp(amp, dev) if onnx_net is None else None,
            channels_last=onnx_net is None,
            progress=progress,
            **inferer_overrides,
        )
        if onnx_net is not None:
            self.model = onnx_net
        else:
            self.model = self.inferer.prepare(model_from_checkpoint(ckpt, self.path))

    def probabilities(
        self,
        image: np.ndarray,
        outputs: tuple[str, ...] = ("main",),
        spacing: tuple[float, ...] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Class probabilities (K, Z, Y, X) of a raw (C, Z, Y, X) image, on its full grid.

        A model trained on resampled cases runs on the image resampled the same way (so
        ``spacing``, in mm, is needed) and its probabilities come back trilinearly.
        Voxels outside the crop a model was trained with are background with certainty.
        """
        if image.ndim != 4 or image.shape[0] != self.in_channels:
            raise DmspsError(
                f"image of shape {tuple(image.shape)}: the model needs ({self.in_channels}, "
                "Z, Y, X)"
            )
        if self.target_spacing and spacing is None:
            raise DmspsError("this model resamples its input: the image spacing is needed")
        norm, box = preprocess(
            image, self.schemes, self.crop_nonzero, spacing, self.target_spacing or None
        )
        probs = self.inferer(self.model, norm, outputs)
        cropped = tuple(b.stop - b.start for b in box)
        if tuple(norm.shape[1:]) != cropped:
            probs = {k: resample(p, cropped) for k, p in probs.items()}
        if cropped == tuple(image.shape[1:]):
            return probs
        full = {}
        for key, p in probs.items():
            out = torch.zeros((p.shape[0], *image.shape[1:]), dtype=p.dtype)
            out[0] = 1.0
            out[(slice(None), *box)] = p
            full[key] = out
        return full

    def segment(
        self,
        image: np.ndarray,
        uncertainty: bool = False,
        largest_component: bool = False,
        spacing: tuple[float, ...] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(label map, uncertainty map or None) of a raw (C, Z, Y, X) image."""
        outputs = ("main", "mean") if uncertainty else ("main",)
        probs = self.probabilities(image, outputs, spacing)
        seg = label_map(probs["main"]).numpy()
        if largest_component:
            seg = largest_component_per_class(seg, self.num_classes, fill=0)
        unc = normalised_entropy(probs["mean"]).numpy() if uncertainty else None
        return seg, unc


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
    **inferer_overrides: Any,
) -> list[Path]:
    """Predict every case; existing outputs are kept (resume) unless ``overwrite``.

    ``largest_component`` keeps each class's largest 3D component (see
    dmsps.inference.postprocess).
    """
    predictor = Predictor(checkpoint, device, **inferer_overrides)
    if uncertainty and predictor.exported:
        raise DmspsError(
            f"{checkpoint}: an exported model holds the main decoder only; uncertainty maps "
            "need both decoders: use the .pt checkpoint"
        )
    cases = find_inputs(
        source, predictor.in_channels, split, predictor.meta.get("channel_names", [])
    )
    src_dir = (source if source.is_dir() else source.parent).resolve()
    if is_within(out, src_dir):
        raise DmspsError(f"{out}: refusing to write into the input folder {src_dir}")
    ending = NIFTI_ENDINGS[0]
    written = []
    for case in progress_bar(cases, desc="predicting", disable=not progress):
        target = out / f"{case.case}{ending}"
        unc_target = out / "uncertainty" / f"{case.case}{ending}"
        if target.is_file() and (not uncertainty or unc_target.is_file()) and not overwrite:
            written.append(target)
            continue
        remove_temporaries(target)
        remove_temporaries(unc_target)
        image, geom = load_channels(case.channels)
        label_map, unc = predictor.segment(image, uncertainty, largest_component, geom.spacing)
        if unc is not None:
            save_volume(unc_target, unc, geom, np.float32)
        save_volume(target, label_map, geom, np.uint8)
        written.append(target)
    return written

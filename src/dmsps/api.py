"""The Python API: load a trained model, segment arrays or NIfTI files.

    import dmsps

    model = dmsps.load_model("runs/acdc/stage2/checkpoints/best.pt")   # or an .onnx export
    seg = model.predict(volume, spacing=(10.0, 1.5, 1.5), uncertainty=True)
    seg.labels, seg.uncertainty, seg.class_names
    seg = model.predict_file("patient001.nii.gz", out="patient001_pred.nii.gz")

Everything the command line does to an image before and after the network (channel
normalisation, the crop and resampling the model was trained with, sliding window or
resized slices, mapping back to the input grid) happens here too: it is the same
``Predictor`` that ``dmsps predict`` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmsps.errors import DmspsError


@dataclass
class Segmentation:
    """A label map (Z, Y, X) of class indices, and the uncertainty map when asked for
    (normalised entropy of the two decoders' mean prediction, in [0, 1])."""

    labels: np.ndarray
    uncertainty: np.ndarray | None
    class_names: list[str]

    def volume(self, name: str) -> float:
        """Number of voxels of a class, by name."""
        if name not in self.class_names:
            raise DmspsError(f"no class '{name}' (classes: {', '.join(self.class_names)})")
        return int((self.labels == self.class_names.index(name)).sum())


class Model:
    """A trained model (checkpoint or ONNX export) ready to segment."""

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        from dmsps.inference.predictor import Predictor

        self._predictor = Predictor(path, device)
        self.path = Path(path)

    @property
    def class_names(self) -> list[str]:
        names = self._predictor.class_names
        return names or [str(i) for i in range(self._predictor.num_classes)]

    @property
    def in_channels(self) -> int:
        return self._predictor.in_channels

    def predict(
        self,
        image: np.ndarray,
        spacing: Sequence[float] | None = None,
        uncertainty: bool = False,
        largest_component: bool = False,
    ) -> Segmentation:
        """Segment a raw image: (Z, Y, X) for one channel, (C, Z, Y, X) for several, or
        one (Y, X) slice. ``spacing`` (mm, same axis order) is needed by models trained on
        resampled volumes; intensities are normalised as in training."""
        array = np.asarray(image, dtype=np.float32)
        flat = array.ndim == 2
        if flat:
            array = array[None]
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise DmspsError(
                f"image of shape {np.shape(image)}: expected (Z, Y, X), (C, Z, Y, X) or (Y, X)"
            )
        if not np.isfinite(array).all():
            raise DmspsError("image holds NaN or infinite values")
        if spacing is not None:
            spacing = tuple(float(s) for s in spacing)
            if flat and len(spacing) == 2:
                spacing = (1.0, *spacing)
            if len(spacing) != 3:
                raise DmspsError(f"spacing {spacing} needs one value per spatial axis")
        label_map, unc = self._predictor.segment(array, uncertainty, largest_component, spacing)
        if flat:
            label_map = label_map[0]
            unc = None if unc is None else unc[0]
        return Segmentation(label_map.astype(np.uint8), unc, self.class_names)

    def predict_file(
        self,
        image: str | Path | Sequence[str | Path],
        out: str | Path | None = None,
        uncertainty: bool = False,
        largest_component: bool = False,
    ) -> Segmentation:
        """Segment a NIfTI image (one file per channel for multi-channel models); with
        ``out``, also write the label map there (atomically) with the input's geometry."""
        from dmsps.data.layout import load_channels
        from dmsps.io.nifti import save_volume

        paths = [Path(image)] if isinstance(image, str | Path) else [Path(p) for p in image]
        if len(paths) != self.in_channels:
            raise DmspsError(
                f"the model needs {self.in_channels} channel file(s), got {len(paths)}"
            )
        array, geom = load_channels(paths)
        label_map, unc = self._predictor.segment(
            array, uncertainty, largest_component, geom.spacing
        )
        if out is not None:
            save_volume(out, label_map, geom, np.uint8)
        return Segmentation(label_map.astype(np.uint8), unc, self.class_names)


def load_model(path: str | Path, device: str = "auto") -> Model:
    """A checkpoint (``.pt``, loaded without running code), an exported ``.onnx``, or the
    name of a model that ships with dmsps (``dmsps models``; its hash is checked)."""
    if isinstance(path, str) and not Path(path).suffix and not Path(path).exists():
        from dmsps.zoo import resolve

        path = resolve(path)
    return Model(path, device)

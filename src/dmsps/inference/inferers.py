"""Inference as an object: how a network runs over a whole (C, Z, Y, X) volume.

Validation, scribble expansion and ``dmsps predict`` all call an ``Inferer``; which one,
and with which settings, is stored in the checkpoint (``meta["inference"]``), so a model
is always run the way it was trained:

``resized-slices``
    2D models trained on whole slices resized to a fixed size (the paper's ACDC setting):
    slices are resized, predicted in batches, and the class probabilities resized back
    bilinearly before the argmax, which keeps thin structures (the myocardium) smoother
    than resizing a label map.
``sliding-window``
    Models trained on patches (3D, or 2D at native resolution): overlapping windows of the
    training patch size, blended with Gaussian (or constant) weights, via MONAI's
    ``sliding_window_inference``. Windows run on the compute device one batch at a time;
    the blended result lives on the CPU, so GPU memory is bounded by the window size and
    host memory by the output (K floats per voxel and output).

Outputs are softmax probabilities on the CPU: ``"main"`` (the main decoder, used for
segmentation) and ``"mean"`` (the mean of both decoders, used for expansion and
uncertainty).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from dmsps.errors import DmspsError
from dmsps.models.fold import fold_batchnorm

OUTPUTS = ("main", "mean")


def resize_slices(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """Resize (N, C, H, W); ``nearest`` for label maps, ``bilinear`` for images."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=tuple(size), mode="nearest-exact")
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def _probabilities(model, x: torch.Tensor, outputs: Sequence[str]) -> dict[str, torch.Tensor]:
    if tuple(outputs) == ("main",):
        return {"main": torch.softmax(model(x, aux=False).float(), 1)}
    main, aux = model(x)
    p_main = torch.softmax(main.float(), 1)
    probs = {"main": p_main, "mean": 0.5 * (p_main + torch.softmax(aux.float(), 1))}
    return {k: probs[k] for k in outputs}


class Inferer(ABC):
    """Runs a model over whole volumes; subclasses say how (``kind``)."""

    kind: ClassVar[str]

    def __init__(
        self,
        device: torch.device | str = "cpu",
        amp: torch.dtype | None = None,
        channels_last: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.amp = amp
        self.channels_last = channels_last

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """An inference copy of ``model`` on the device: eval mode, BatchNorm folded into the
        convolutions, in the memory format this inferer feeds it."""
        return fold_batchnorm(model.to(self.device), self.channels_last)

    def _format(self, x: torch.Tensor) -> torch.Tensor:
        if not self.channels_last:
            return x
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        return x.contiguous(memory_format=fmt)

    def _run(self, model, x: torch.Tensor, outputs: Sequence[str]) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            return _probabilities(model, self._format(x), outputs)

    @torch.no_grad()
    def __call__(
        self, model: torch.nn.Module, image: np.ndarray, outputs: Sequence[str] = ("main",)
    ) -> dict[str, torch.Tensor]:
        """Probabilities (K, Z, Y, X) on the CPU for a normalised (C, Z, Y, X) image."""
        bad = [o for o in outputs if o not in OUTPUTS]
        if bad or not outputs:
            raise ValueError(f"outputs must be among {OUTPUTS}, got {list(outputs)}")
        model.eval()
        return self.predict(model, image, tuple(outputs))

    @abstractmethod
    def predict(self, model, image: np.ndarray, outputs: tuple[str, ...]) -> dict[str, Any]: ...

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Plain-typed settings stored in checkpoints (``kind`` included)."""


class ResizedSliceInferer(Inferer):
    """A 2D model over a volume slice by slice, each slice resized to the training size."""

    kind = "resized-slices"

    def __init__(self, size: Sequence[int], batch: int = 16, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(size) != 2:
            raise DmspsError(f"resized-slices inference needs a 2D size, got {list(size)}")
        self.size = tuple(int(s) for s in size)
        self.batch = batch

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": list(self.size)}

    def predict(self, model, image, outputs):
        _, z, h, w = image.shape
        slices = torch.from_numpy(np.ascontiguousarray(image.transpose(1, 0, 2, 3)))
        outs: dict[str, list[torch.Tensor]] = {k: [] for k in outputs}
        for start in range(0, z, self.batch):
            x = slices[start : start + self.batch].to(self.device, non_blocking=True)
            x = resize_slices(x, self.size, "bilinear")
            for key, p in self._run(model, x, outputs).items():
                if (h, w) != self.size:
                    p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
                outs[key].append(p.cpu())
        return {k: torch.cat(v).permute(1, 0, 2, 3).contiguous() for k, v in outs.items()}


class SlidingWindowInferer(Inferer):
    """Overlapping windows of the training patch size, blended (2D or 3D models).

    A 2D model runs on each slice's (Y, X) plane with the slices as the batch; a 3D model
    on (Z, Y, X) windows. A window larger than the volume shrinks to it (the network pads
    to its own multiple), so small volumes are not padded with artificial intensities.
    """

    kind = "sliding-window"

    def __init__(
        self,
        roi: Sequence[int],
        overlap: float = 0.5,
        blend: str = "gaussian",
        batch: int = 1,
        sigma_scale: float = 0.125,
        progress: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(roi) not in (2, 3) or any(int(r) <= 0 for r in roi):
            raise DmspsError(f"sliding-window size must be 2 or 3 positive sizes, got {list(roi)}")
        if not 0 <= overlap < 1:
            raise DmspsError(f"sliding-window overlap must be in [0, 1), got {overlap}")
        if blend not in ("gaussian", "constant"):
            raise DmspsError(f"sliding-window blend must be gaussian or constant, not '{blend}'")
        self.roi = tuple(int(r) for r in roi)
        self.overlap, self.blend, self.batch = float(overlap), blend, int(batch)
        self.sigma_scale, self.progress = float(sigma_scale), progress

    def settings(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "roi": list(self.roi),
            "overlap": self.overlap,
            "blend": self.blend,
        }

    def predict(self, model, image, outputs):
        from monai.inferers import sliding_window_inference

        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        # 2D: the slices become the batch, (Z, C, Y, X); 3D: one (1, C, Z, Y, X) volume.
        x = x.permute(1, 0, 2, 3) if len(self.roi) == 2 else x[None]
        roi = [min(r, s) for r, s in zip(self.roi, x.shape[2:], strict=True)]

        def predictor(window: torch.Tensor) -> tuple[torch.Tensor, ...]:
            probs = self._run(model, window, outputs)
            return tuple(probs[k] for k in outputs)

        result = sliding_window_inference(
            x,
            roi,
            self.batch,
            predictor,
            overlap=self.overlap,
            mode=self.blend,
            sigma_scale=self.sigma_scale,
            sw_device=self.device,
            device=torch.device("cpu"),
            progress=self.progress,
        )
        if isinstance(result, torch.Tensor):
            result = (result,)
        out = {}
        for key, p in zip(outputs, result, strict=True):
            p = torch.as_tensor(p)
            out[key] = (p.permute(1, 0, 2, 3) if len(self.roi) == 2 else p[0]).contiguous()
        return out


INFERERS: dict[str, type[Inferer]] = {
    c.kind: c for c in (ResizedSliceInferer, SlidingWindowInferer)
}


def make_inferer(
    settings: dict[str, Any],
    device: torch.device | str = "cpu",
    amp: torch.dtype | None = None,
    channels_last: bool = True,
    **overrides: Any,
) -> Inferer:
    """The inferer a checkpoint's ``meta["inference"]`` names, with run-time overrides
    (``overlap``, ``blend``, ``batch``, ``progress``) applied where they mean something."""
    settings = dict(settings)
    kind = settings.pop("kind", None)
    if kind not in INFERERS:
        raise DmspsError(f"unknown inference kind '{kind}' (known: {', '.join(INFERERS)})")
    common = {"device": device, "amp": amp, "channels_last": channels_last}
    if kind == ResizedSliceInferer.kind:
        batch = overrides.get("batch") or 16
        return ResizedSliceInferer(settings["size"], batch=batch, **common)
    for key in ("overlap", "blend", "batch", "progress"):
        if overrides.get(key) is not None:
            settings[key] = overrides[key]
    return SlidingWindowInferer(**settings, **common)


def inference_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta["inference"]``; checkpoints up to release 0.1 only stored a square size."""
    if "inference" in meta:
        return dict(meta["inference"])
    size = int(meta["patch_size"])
    return {"kind": ResizedSliceInferer.kind, "size": [size, size]}

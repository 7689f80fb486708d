"""Intensity normalisation: one scheme per channel, chosen from the channel's name.

As in nnU-Net, the name in ``dataset.json``'s ``channel_names`` says what kind of signal a
channel is, and that decides how to normalise it:

=====================  ===================  ==============================================
channel name           scheme               why
=====================  ===================  ==============================================
CT                     ``ct-window:-150:250``  Hounsfield units mean the same in every
                                            scan: clip to a soft-tissue window and scale
                                            to [0, 1] (the DMSPS authors' WORD setting)
t1, t1ce, t2, flair    ``nonzero-zscore:99.9``  skull-stripped MRI: background is exactly
(and t1gd, t1w, t2w)                        0 and must stay out of the statistics; clip
                                            bright outliers at the 99.9th percentile
                                            (the authors' BraTS setting)
noNorm / none          ``none``             already normalised
rescale_to_0_1         ``minmax``           nnU-Net's name for min-max scaling
anything else (MRI)    ``zscore``           MRI gain differs between scanners far more
                                            than anatomy: per-volume z-score
=====================  ===================  ==============================================

``dataset.json`` may pin a scheme per channel with ``"normalization": {"0": "zscore"}``
and a training run may override it (``--normalization``). The schemes of a model are
stored in its checkpoint and applied again by ``dmsps predict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dmsps.errors import DmspsError

#: name -> (number of parameters, their defaults, description)
SCHEMES: dict[str, tuple[tuple[float, ...], str]] = {
    "zscore": ((), "z-score over the whole volume"),
    "nonzero-zscore": (
        (99.9,),
        "clip at the given percentile of non-zero voxels, z-score "
        "over non-zero voxels, background stays 0",
    ),
    "ct-window": ((-150.0, 250.0), "clip to [low, high] (HU), scale to [0, 1]"),
    "minmax": ((), "scale the volume's range to [0, 1]"),
    "none": ((), "leave intensities as they are"),
}

_BRAIN_MRI = {"t1", "t1ce", "t1gd", "t1c", "t2", "flair", "t1w", "t2w", "t2f", "t1n", "t2-flair"}


@dataclass(frozen=True)
class Normalization:
    """One channel's scheme and its parameters; ``str()`` gives the spec it parses from."""

    scheme: str
    params: tuple[float, ...] = ()

    def __str__(self) -> str:
        return ":".join([self.scheme, *(f"{p:g}" for p in self.params)])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalise one channel (any shape) into a new float32 array."""
        x = x.astype(np.float32, copy=True)
        if self.scheme == "zscore":
            mean, std = float(x.mean()), float(x.std())
            x -= mean
            x /= max(std, 1e-6)
        elif self.scheme == "nonzero-zscore":
            mask = x != 0
            if mask.any():
                values = x[mask]
                top = float(np.percentile(values, self.params[0]))
                np.minimum(x, top, out=x)
                values = x[mask]
                mean, std = float(values.mean()), float(values.std())
                x = np.where(mask, (x - mean) / max(std, 1e-6), 0.0).astype(np.float32)
        elif self.scheme == "ct-window":
            low, high = self.params
            np.clip(x, low, high, out=x)
            x -= low
            x /= high - low
        elif self.scheme == "minmax":
            lo, hi = float(x.min()), float(x.max())
            x -= lo
            x /= max(hi - lo, 1e-6)
        return x


def parse(spec: str) -> Normalization:
    """``"ct-window:-150:250"`` -> Normalization("ct-window", (-150.0, 250.0))."""
    name, *rest = str(spec).strip().split(":")
    if name not in SCHEMES:
        raise DmspsError(
            f"unknown normalisation '{spec}' (known: {', '.join(SCHEMES)}; parameters follow "
            "colons, e.g. ct-window:-150:250)"
        )
    defaults = SCHEMES[name][0]
    if len(rest) not in (0, len(defaults)):
        raise DmspsError(f"normalisation '{spec}': {name} takes {len(defaults)} parameter(s)")
    try:
        params = tuple(float(v) for v in rest) if rest else defaults
    except ValueError:
        raise DmspsError(f"normalisation '{spec}': parameters must be numbers") from None
    if name == "ct-window" and not params[0] < params[1]:
        raise DmspsError(f"normalisation '{spec}': the window needs low < high")
    if name == "nonzero-zscore" and not 0 < params[0] <= 100:
        raise DmspsError(f"normalisation '{spec}': the percentile must be in (0, 100]")
    return Normalization(name, params)


def for_channel_name(name: str) -> Normalization:
    """The scheme nnU-Net-style channel names imply (table in the module docstring)."""
    key = name.strip().lower()
    if key == "ct":
        return parse("ct-window")
    if key in _BRAIN_MRI:
        return parse("nonzero-zscore")
    if key in ("nonorm", "none"):
        return parse("none")
    if key == "rescale_to_0_1":
        return parse("minmax")
    return parse("zscore")


def resolve(
    channel_names: Sequence[str],
    pinned: dict | None = None,
    override: Sequence[str] = (),
) -> list[Normalization]:
    """Per-channel schemes: ``override`` (a run setting: one spec, or one per channel),
    else dataset.json's ``normalization`` entry for the channel, else the channel name."""
    n = len(channel_names)
    if override:
        if len(override) not in (1, n):
            raise DmspsError(
                f"normalization lists {len(override)} schemes for {n} channels; give one, or "
                "one per channel"
            )
        specs = list(override) * (n if len(override) == 1 else 1)
        return [parse(s) for s in specs]
    pinned = pinned or {}
    if not isinstance(pinned, dict):
        raise DmspsError("dataset.json: 'normalization' must map channel numbers to schemes")
    return [
        parse(pinned[str(i)]) if str(i) in pinned else for_channel_name(name)
        for i, name in enumerate(channel_names)
    ]


def normalise(image: np.ndarray, schemes: Sequence[Normalization | str] | None = None):
    """Normalise a (C, Z, Y, X) image channel by channel (default: z-score each)."""
    if schemes is None:
        schemes = [Normalization("zscore")] * image.shape[0]
    if len(schemes) != image.shape[0]:
        raise DmspsError(f"{len(schemes)} normalisation schemes for {image.shape[0]} channels")
    out = np.empty(image.shape, np.float32)
    for c, s in enumerate(schemes):
        out[c] = (parse(s) if isinstance(s, str) else s).apply(image[c])
    return out


def from_checkpoint(meta: dict, channels: int) -> list[Normalization]:
    """Schemes stored in a checkpoint; releases up to 0.1 stored the one word "zscore"."""
    stored = meta.get("normalization", meta.get("normalisation", "zscore"))
    if isinstance(stored, str):
        return [parse(stored)] * channels
    return [parse(s) for s in stored]

"""Every check of label and scribble values, in one place.

Label maps hold class numbers 0..C-1; scribbles hold 0..C-1 on annotated voxels and the
ignore value (C) elsewhere. Importers, ``check-data``, evaluation, the scribble simulator
and the metrics all read such maps from files or arrays that may hold anything (floats,
NaN, a wrong class count), and must say the same thing about the same problem.

``where`` names the source in messages: a ``Path`` gives a ``DataError`` naming the file
(``path: problem``); a plain string such as ``"prediction"`` starts the message instead.
Both are ``LabelError``, which is also a ``ValueError`` for callers working on arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dmsps.errors import DataError, DmspsError, listing


class LabelError(DmspsError, ValueError):
    """A label or scribble map holds values it must not hold."""


class LabelFileError(DataError, LabelError):
    """As ``LabelError``, for a map read from a file (the message names the file)."""


def _fail(where: str | Path | None, problem: str, kind: str) -> LabelError:
    if isinstance(where, Path):
        return LabelFileError(where, f"{kind} {problem}")
    return LabelError(f"{where or kind} {problem}")


def values_outside(arr: np.ndarray, lo: int, hi: int, limit: int = 10) -> str:
    """The distinct values of ``arr`` outside [lo, hi], listed for a message."""
    return listing((int(v) for v in np.unique(arr[(arr < lo) | (arr > hi)])), limit)


def as_class_map(
    arr: np.ndarray, where: str | Path | None = None, kind: str = "label", tolerance: float = 0.0
) -> np.ndarray:
    """The map as int64; floats must be finite whole numbers (within ``tolerance``, for
    float storage noise such as 2.9999998)."""
    arr = np.asarray(arr)
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise _fail(where, f"holds value {int(arr.max())}, far outside any class range", kind)
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.floating):
        raise _fail(where, f"must hold numbers, got dtype {arr.dtype}", kind)
    if arr.size and not np.isfinite(arr).all():
        raise _fail(where, "holds NaN or infinite values", kind)
    rounded = np.rint(arr)
    off = np.abs(arr - rounded) > tolerance
    if off.any():
        raise _fail(
            where,
            f"holds non-integer values (e.g. {float(arr[off].flat[0]):g}); it must hold "
            "whole numbers (class indices)",
            kind,
        )
    if rounded.size and float(np.abs(rounded).max()) >= 2.0**63:  # would wrap as int64
        huge = float(rounded.flat[np.abs(rounded).argmax()])
        raise _fail(where, f"holds value {huge:g}, far outside any class range", kind)
    return rounded.astype(np.int64)


def check_label(
    arr: np.ndarray,
    num_classes: int,
    where: str | Path | None = None,
    kind: str = "label",
    tolerance: float = 0.0,
    context: str = "",
) -> np.ndarray:
    """A dense class map in 0..C-1 as uint8 (int16 above 256 classes, int64 above 32768:
    importers check source maps with a huge C, whose values must not wrap)."""
    out = as_class_map(arr, where, kind, tolerance)
    if out.size and (out.min() < 0 or out.max() > num_classes - 1):
        bad = values_outside(out, 0, num_classes - 1)
        raise _fail(where, f"values {bad} outside 0..{num_classes - 1}{context}", kind)
    return out.astype(_map_dtype(num_classes - 1), copy=False)


def check_scribble(
    arr: np.ndarray,
    num_classes: int,
    ignore: int,
    where: str | Path | None = None,
    context: str = "",
) -> np.ndarray:
    """A scribble in our convention (classes 0..C-1, ``ignore`` unannotated) as uint8
    (wider when ``ignore`` or a class exceeds 255, so ``ignore`` never wraps to a class)."""
    out = as_class_map(arr, where, "scribble")
    ok = ((out >= 0) & (out < num_classes)) | (out == ignore)
    if not ok.all():
        bad = np.unique(out[~ok])
        shown = ", ".join(str(int(v)) for v in bad[:10])
        raise _fail(
            where,
            f"values {shown} outside 0..{num_classes - 1} for classes and {ignore} for "
            f"unannotated{context}",
            "scribble",
        )
    return out.astype(_map_dtype(max(num_classes - 1, ignore)), copy=False)


def _map_dtype(largest: int) -> type[np.integer]:
    """The smallest of uint8, int16, int64 that holds 0..largest."""
    return np.uint8 if largest <= 255 else np.int16 if largest <= 32767 else np.int64


def convert_scribble(
    arr: np.ndarray,
    num_classes: int,
    unannotated: int,
    where: str | Path | None = None,
    value_map: Mapping[int, int] | None = None,
) -> np.ndarray:
    """A source scribble in our convention: ``value_map`` first, then the source's
    ``unannotated`` value becomes C. Any other value outside 0..C-1 is an error."""
    s = as_class_map(arr, where, "scribble")
    out = s.copy()
    for old, new in (value_map or {}).items():
        out[s == old] = new
    out[s == unannotated] = num_classes
    if out.size and (out.min() < 0 or out.max() > num_classes):
        bad = values_outside(out, 0, num_classes)
        raise _fail(
            where,
            f"values {bad} are neither classes 0..{num_classes - 1} nor the unannotated "
            f"value {unannotated}",
            "scribble",
        )
    return out.astype(np.uint8)


def check_unannotated(unannotated: int, num_classes: int, value_map: Mapping[int, int]) -> None:
    """An unannotated value that is also a class value would erase that class."""
    if 0 <= unannotated < num_classes and unannotated not in value_map.values():
        raise DmspsError(
            f"unannotated value {unannotated} is also class {unannotated}; if your scribbles "
            f"use another value for class {unannotated}, say which with --scribble-map "
            f"(e.g. --scribble-map {num_classes}:{unannotated})"
        )


def max_label(
    arr: np.ndarray, where: str | Path | None = None, kind: str = "label", tolerance: float = 0.0
) -> int:
    """Largest value of a non-negative class map (0 for an empty one)."""
    out = as_class_map(arr, where, kind, tolerance)
    if out.size and out.min() < 0:
        raise _fail(where, f"holds negative value {int(out.min())}", kind)
    return int(out.max()) if out.size else 0


def remap(arr: np.ndarray, mapping: Mapping[int, int], default: int | None = 0) -> np.ndarray:
    """Dense label mapping (e.g. WORD's 16 organs -> the paper's 7): source value -> ours.

    Values not in ``mapping`` become ``default`` (background), or stay as they are when
    ``default`` is None.
    """
    src = np.asarray(arr).astype(np.int64)
    out = src.copy() if default is None else np.full_like(src, default)
    for old, new in mapping.items():
        out[src == old] = new
    return out


def parse_value_map(text: str | None, option: str = "--scribble-map") -> dict[int, int]:
    """``"4:0,0:4"`` -> {4: 0, 0: 4}."""
    if not text:
        return {}
    out: dict[int, int] = {}
    for item in text.split(","):
        try:
            old, new = (int(v) for v in item.split(":"))
        except ValueError:
            raise DmspsError(f"{option}: '{item}' is not OLD:NEW with integer values") from None
        if old in out:
            raise DmspsError(f"{option}: value {old} is mapped twice")
        out[old] = new
    return out

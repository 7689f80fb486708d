"""The on-disk dataset layout: nnU-Net v2 raw layout plus ``scribblesTr/``.

::

    DATASET/
      dataset.json          channel_names, labels (incl. "ignore": C), file_ending
      splits.json           {"train": [...], "val": [...], "test": [...]}
      imagesTr/<case>_0000.nii.gz   one file per channel
      labelsTr/<case>.nii.gz        dense labels (optional)
      scribblesTr/<case>.nii.gz     0..C-1 annotated, C = unannotated
      imagesTs/, labelsTs/          held-out cases (optional)

Train and val cases live in the ``Tr`` folders, test cases in ``Ts`` (or ``Tr`` when a
user keeps everything together); ``Dataset.paths`` finds them either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dmsps.data.labels import check_label, check_scribble
from dmsps.errors import DataError, DmspsError
from dmsps.io.atomic import write_json
from dmsps.io.nifti import Geometry, load_volume, save_volume

SPLITS = ("train", "val", "test")

#: Everything a dataset folder of ours may hold, dataset.json first: tools that replace a
#: dataset (``--overwrite``) remove exactly these, and an interrupted removal leaves a
#: folder without dataset.json, i.e. marked incomplete.
LAYOUT_ENTRIES = (
    "dataset.json",
    "splits.json",
    "imagesTr",
    "labelsTr",
    "scribblesTr",
    "imagesTs",
    "labelsTs",
    "scribblesTs",
)


_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")

#: Name endings that mark a file beside a case's images as its label or its scribble, not
#: an image (``X_seg``, BraTS's seg files; ``X_scribble``): `dmsps import nifti` matches
#: labels and scribbles by them, `dmsps predict` skips such files.
LABEL_SUFFIXES = ("_gt", "_label", "_seg")
SCRIBBLE_SUFFIXES = ("_scribble",)


def split_channel(stem: str) -> tuple[str, int | None]:
    """``"brain_0001"`` -> ("brain", 1); a name without a 4-digit suffix -> (name, None).

    nnU-Net's convention: the channels of case NAME are NAME_0000, NAME_0001, ...
    """
    m = _CHANNEL_RE.match(stem)
    return (m["case"], int(m["channel"])) if m else (stem, None)


def channel_file(case: str, channel: int, ending: str = ".nii.gz") -> str:
    return f"{case}_{channel:04d}{ending}"


def load_channels(paths: Sequence[Path]) -> tuple[np.ndarray, Geometry]:
    """(channels, Z, Y, X) float32 image of a case, one file per channel.

    Every channel must lie on channel 0's grid and hold finite values: NaN in one voxel
    turns every loss and prediction into NaN, hours later and far from the cause.
    """
    arrays, geom = [], None
    for p in paths:
        arr, g = load_volume(p, np.float32)
        if not np.isfinite(arr).all():
            n_nan = int(np.isnan(arr).sum())
            n_inf = int((~np.isfinite(arr)).sum()) - n_nan
            raise DataError(
                p,
                f"image holds {n_nan} NaN and {n_inf} infinite values; replace them with "
                "finite numbers (e.g. 0) in the file",
            )
        if geom is None:
            geom = g
        elif problem := g.mismatch(geom, "channel", "channel 0's"):
            raise DataError(p, problem)
        arrays.append(arr)
    if geom is None:
        raise DmspsError("no image channels given")
    return np.stack(arrays), geom


@dataclass(frozen=True)
class CasePaths:
    case: str
    images: list[Path]
    label: Path | None
    scribble: Path | None


@dataclass
class DatasetMeta:
    """The parts of dataset.json that dmsps uses."""

    name: str
    channel_names: list[str]
    labels: dict[str, int]
    file_ending: str = ".nii.gz"
    extra: dict = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        """Class names ordered by value, without the ignore entry."""
        items = sorted((v, k) for k, v in self.labels.items() if k != "ignore")
        return [k for _, k in items]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def ignore_value(self) -> int:
        return int(self.labels.get("ignore", self.num_classes))

    def to_json(self) -> dict:
        out = dict(self.extra)
        out.update(
            {
                "name": self.name,
                "channel_names": {str(i): n for i, n in enumerate(self.channel_names)},
                "labels": dict(self.labels),
                "file_ending": self.file_ending,
            }
        )
        return out

    @classmethod
    def from_json(cls, obj: object, path: Path) -> DatasetMeta:
        """Parse dataset.json, raising DataError with the precise problem."""
        if not isinstance(obj, dict):
            raise DataError(path, "must hold a JSON object")
        for key in ("channel_names", "labels"):
            if key not in obj:
                raise DataError(path, f"missing key '{key}'")
        ch = obj["channel_names"]
        if not isinstance(ch, dict) or not ch:
            raise DataError(path, '\'channel_names\' must be a non-empty object like {"0": "MRI"}')
        try:
            order = sorted(ch, key=int)
        except (TypeError, ValueError):
            raise DataError(path, "'channel_names' keys must be channel numbers") from None
        if [int(k) for k in order] != list(range(len(order))):
            raise DataError(path, "'channel_names' keys must be 0..N-1")
        labels = obj["labels"]
        if not isinstance(labels, dict) or not labels:
            raise DataError(path, "'labels' must be a non-empty object like {\"background\": 0}")
        for name, value in labels.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise DataError(path, f"label '{name}' must map to a non-negative integer")
        values = sorted(v for k, v in labels.items() if k != "ignore")
        if values != list(range(len(values))):
            raise DataError(path, f"label values must be 0..C-1 without gaps, got {values}")
        if len(values) < 2:
            raise DataError(path, "need at least two classes (background and one structure)")
        if "ignore" in labels and labels["ignore"] != len(values):
            raise DataError(
                path,
                f"'ignore' must be {len(values)} (the number of classes), got {labels['ignore']}",
            )
        ending = obj.get("file_ending", ".nii.gz")
        if ending not in (".nii.gz", ".nii"):
            raise DataError(path, f"file_ending {ending!r} is not supported (use .nii.gz or .nii)")
        known = {"name", "channel_names", "labels", "file_ending"}
        return cls(
            name=str(obj.get("name", path.parent.name)),
            channel_names=[str(ch[k]) for k in order],
            labels={str(k): int(v) for k, v in labels.items()},
            file_ending=ending,
            extra={k: v for k, v in obj.items() if k not in known},
        )


class Dataset:
    """Read access to a dataset folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DmspsError(
                f"{self.root}: dataset folder not found; check the path (the folder that "
                "holds dataset.json)"
            )
        if not any(self.root.iterdir()):
            raise DmspsError(
                f"{self.root}: dataset folder is empty; make a dataset in it with "
                "`dmsps import` (or `dmsps synth`), or give the folder that holds dataset.json"
            )
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file():
            raise DataError(
                meta_path,
                "missing (every dataset needs a dataset.json; `dmsps import` writes one)",
            )
        try:
            obj = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(meta_path, f"malformed JSON ({exc}); fix the syntax there") from None
        self.meta = DatasetMeta.from_json(obj, meta_path)
        self.splits = self._read_splits()

    # --- splits --------------------------------------------------------------------
    def _read_splits(self) -> dict[str, list[str]]:
        path = self.root / "splits.json"
        if not path.is_file():
            # No split file: every Tr case trains, every Ts case tests.
            return {"train": self.cases_in("Tr"), "val": [], "test": self.cases_in("Ts")}
        try:
            obj = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(path, f"malformed JSON ({exc}); fix the syntax there") from None
        if not isinstance(obj, dict):
            raise DataError(path, "must hold an object with train/val/test lists")
        out: dict[str, list[str]] = {}
        for name in SPLITS:
            cases = obj.get(name, [])
            if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
                raise DataError(path, f"'{name}' must be a list of case names")
            out[name] = list(cases)
        unknown = set(obj) - set(SPLITS)
        if unknown:
            raise DataError(path, f"unknown split(s) {sorted(unknown)}; use train/val/test")
        return out

    def cases_in(self, part: str) -> list[str]:
        """Case names found in imagesTr or imagesTs (from the channel-0 files)."""
        folder = self.root / f"images{part}"
        end = self.meta.file_ending
        if not folder.is_dir():
            return []
        cases = []
        for p in folder.iterdir():
            if p.name.endswith(end) and not p.name.startswith("."):
                case, channel = split_channel(p.name[: -len(end)])
                if channel == 0:
                    cases.append(case)
        return sorted(cases)

    def split(self, name: str) -> list[str]:
        if name not in SPLITS:
            raise DmspsError(f"unknown split '{name}' (choose from {', '.join(SPLITS)})")
        return list(self.splits.get(name, []))

    # --- paths ---------------------------------------------------------------------
    @property
    def num_channels(self) -> int:
        return len(self.meta.channel_names)

    def paths(self, case: str) -> CasePaths:
        """Locate a case in Tr, else Ts; missing optional files come back as None."""
        end = self.meta.file_ending
        for part in ("Tr", "Ts"):
            images = [
                self.root / f"images{part}" / channel_file(case, c, end)
                for c in range(self.num_channels)
            ]
            if images[0].is_file():
                label = self.root / f"labels{part}" / f"{case}{end}"
                scribble = self.root / f"scribbles{part}" / f"{case}{end}"
                return CasePaths(
                    case,
                    images,
                    label if label.is_file() else None,
                    scribble if scribble.is_file() else None,
                )
        raise DataError(
            self.root / "imagesTr" / channel_file(case, 0, end), f"no image for case '{case}'"
        )

    # --- loading -------------------------------------------------------------------
    def load_image(self, case: str) -> tuple[np.ndarray, Geometry]:
        """(channels, Z, Y, X) float32 image and its geometry."""
        return load_channels(self.paths(case).images)

    def load_label(self, case: str, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        """Dense label (int16) of a case, checked against the class range; None if absent."""
        p = self.paths(case).label
        if p is None:
            return None
        arr, g = load_volume(p, np.float32)
        if shape is not None and tuple(g.shape) != tuple(shape):
            raise DataError(
                p,
                f"label shape {g.shape} differs from the image's {tuple(shape)}; resample or "
                "crop it onto the image's voxel grid",
            )
        names = ", ".join(self.meta.class_names)
        context = f" (dataset.json's classes: {names}); fix the label or the classes"
        values = check_label(arr, self.meta.num_classes, p, tolerance=1e-3, context=context)
        return values.astype(np.int16)

    def missing_scribble(self, case: str, folder: Path | None = None) -> DataError:
        """The error for a training case without a scribble: it names the file needed."""
        where = Path(folder) if folder else self.root / "scribblesTr"
        return DataError(
            where / f"{case}{self.meta.file_ending}",
            f"missing: training case '{case}' needs a scribble; add this file, or list the "
            "case under 'test' in splits.json",
        )

    def scribble_path(self, case: str, folder: Path | None = None) -> Path | None:
        if folder is None:
            return self.paths(case).scribble
        p = Path(folder) / f"{case}{self.meta.file_ending}"
        return p if p.is_file() else None

    def load_scribble(
        self, case: str, folder: Path | None = None, shape: tuple[int, ...] | None = None
    ) -> np.ndarray | None:
        """Scribble of a case, from ``scribblesTr`` or an alternative folder (expanded seeds)."""
        p = self.scribble_path(case, folder)
        if p is None:
            return None
        arr, g = load_volume(p, np.float32)
        if shape is not None and tuple(g.shape) != tuple(shape):
            raise DataError(
                p,
                f"scribble shape {g.shape} differs from the image's {tuple(shape)}; resample "
                "or crop it onto the image's voxel grid",
            )
        meta = self.meta
        context = "; fix the scribble, or the classes in dataset.json"
        values = check_scribble(arr, meta.num_classes, meta.ignore_value, p, context=context)
        return values.astype(np.int16)


class DatasetWriter:
    """Creates a dataset folder; used by importers, the synthetic generator and expansion."""

    def __init__(self, root: str | Path, meta: DatasetMeta) -> None:
        self.root = Path(root)
        self.meta = meta
        self.root.mkdir(parents=True, exist_ok=True)

    def _p(self, kind: str, part: str, name: str) -> Path:
        return self.root / f"{kind}{part}" / f"{name}{self.meta.file_ending}"

    def write_case(
        self,
        case: str,
        image: np.ndarray,
        geometry: Geometry,
        label: np.ndarray | None = None,
        scribble: np.ndarray | None = None,
        test: bool = False,
    ) -> None:
        """Write one case; ``image`` is (channels, Z, Y, X) or (Z, Y, X) for one channel."""
        part = "Ts" if test else "Tr"
        image = image[None] if image.ndim == 3 else image
        if image.shape[0] != len(self.meta.channel_names):
            raise ValueError(
                f"{case}: {image.shape[0]} channels, dataset has {len(self.meta.channel_names)}"
            )
        for c in range(image.shape[0]):
            save_volume(
                self._p("images", part, channel_file(case, c, "")), image[c], geometry, np.float32
            )
        # Checked, and stored in the smallest type that holds them: a blind uint8 cast
        # would turn 256 into 0 or -1 into 255 without a word.
        meta = self.meta
        if label is not None:
            target = self._p("labels", part, case)
            label = check_label(label, meta.num_classes, target, context=f" (case {case})")
            save_volume(target, label, geometry)
        if scribble is not None:
            target = self._p("scribbles", part, case)
            scribble = check_scribble(
                scribble, meta.num_classes, meta.ignore_value, target, context=f" (case {case})"
            )
            save_volume(target, scribble, geometry)

    def finish(self, splits: dict[str, list[str]]) -> None:
        """Write dataset.json and splits.json last, so a folder with both is complete."""
        meta = self.meta.to_json()
        meta["numTraining"] = len(splits.get("train", [])) + len(splits.get("val", []))
        write_json(self.root / "splits.json", {k: list(splits.get(k, [])) for k in SPLITS})
        write_json(self.root / "dataset.json", meta)


def cardiac_meta(name: str = "cardiac") -> DatasetMeta:
    """ACDC-style classes: background, RV, myocardium, LV; 4 = unannotated."""
    return DatasetMeta(
        name=name,
        channel_names=["MRI"],
        labels={"background": 0, "RV": 1, "Myo": 2, "LV": 3, "ignore": 4},
    )

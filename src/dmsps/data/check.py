"""Dataset validation behind ``dmsps check-data``.

A broken dataset otherwise fails hours into training, or worse, trains silently on wrong
data (scribbles on another grid, a wrong ignore value, NaN intensities). This module looks
at every file once and collects *all* problems, each with the file it concerns, so a user
can fix a dataset in one pass instead of one error per run.

Errors make a dataset unusable for training or evaluation; warnings are things a user
should know about (an unused case, a missing label) that do not stop a run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dmsps.data.labels import LabelError, check_label, check_scribble
from dmsps.data.layout import SPLITS, DatasetMeta, split_channel
from dmsps.errors import DataError
from dmsps.io.nifti import NIFTI_ENDINGS, Geometry, load_volume

PARTS = ("Tr", "Ts")
KINDS = ("images", "labels", "scribbles")

#: Files that hold image data dmsps cannot read: reported as errors, since the user
#: probably expects them to be used, unlike a stray README.
FOREIGN_IMAGE_ENDINGS = (
    ".nii",
    ".nii.gz",
    ".mha",
    ".mhd",
    ".nrrd",
    ".nhdr",
    ".h5",
    ".hdf5",
    ".npy",
    ".npz",
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".dcm",
    ".img",
    ".hdr",
    ".mgz",
)

#: Scribble/label disagreement above this fraction of annotated voxels suggests swapped
#: class values rather than annotation noise (real ACDC scribbles disagree on < 1 %).
DISAGREEMENT_WARN = 0.10

#: More than this fraction of voxels annotated suggests the ignore value is wrong.
DENSE_SCRIBBLE_WARN = 0.5


@dataclass
class CheckReport:
    """Everything ``check_dataset`` found; ``ok`` is True when there is no error."""

    root: Path
    errors: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    cases_checked: int = 0
    split_sizes: dict[str, int] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    #: Annotated scribble voxels per class over the train and val cases.
    scribble_voxels: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, path: Path, message: str) -> None:
        self.errors.append((Path(path), message))

    def warn(self, path: Path, message: str) -> None:
        self.warnings.append((Path(path), message))

    def problem_lines(self) -> list[str]:
        """One ``path: severity: problem`` line per problem, errors first."""
        lines = [f"{p}: error: {m}" for p, m in self.errors]
        lines += [f"{p}: warning: {m}" for p, m in self.warnings]
        return lines

    def summary(self) -> str:
        sizes = ", ".join(f"{k} {self.split_sizes.get(k, 0)}" for k in SPLITS)
        lines = [f"checked {self.cases_checked} cases in {self.root} ({sizes})"]
        if self.scribble_voxels:
            total = sum(self.scribble_voxels) or 1
            names = self.class_names or [str(i) for i in range(len(self.scribble_voxels))]
            per_class = ", ".join(
                f"{n} {v:,} ({100 * v / total:.1f}%)"
                for n, v in zip(names, self.scribble_voxels, strict=False)
            )
            lines.append(f"scribble voxels per class (train+val): {per_class}")
        verdict = "OK" if self.ok else "NOT usable until the errors are fixed"
        lines.append(f"{len(self.errors)} errors, {len(self.warnings)} warnings: {verdict}")
        return "\n".join(lines)


@dataclass
class _Files:
    """What the data folders hold, by part ('Tr'/'Ts') and case."""

    images: dict[str, dict[str, dict[int, Path]]] = field(
        default_factory=lambda: {p: {} for p in PARTS}
    )
    labels: dict[str, dict[str, Path]] = field(default_factory=lambda: {p: {} for p in PARTS})
    scribbles: dict[str, dict[str, Path]] = field(default_factory=lambda: {p: {} for p in PARTS})

    def all_cases(self) -> list[str]:
        return sorted(set(self.images["Tr"]) | set(self.images["Ts"]))


def check_dataset(root: str | Path, progress: bool = False) -> CheckReport:
    """Check a dataset folder and return every problem found (never raises for bad data)."""
    root = Path(root)
    report = CheckReport(root)
    if not root.is_dir():
        report.error(root, "dataset folder not found")
        return report
    meta = _check_meta(root, report)
    ending = meta.file_ending if meta else _guess_ending(root)
    files = _scan_folders(root, ending, report)
    num_channels = (
        len(meta.channel_names)
        if meta
        else 1 + max((c for p in PARTS for ch in files.images[p].values() for c in ch), default=0)
    )
    if meta is None:
        report.warn(
            root / "dataset.json",
            "label and scribble values not checked, because dataset.json is unusable",
        )
    else:
        report.class_names = meta.class_names
        report.scribble_voxels = [0] * meta.num_classes
    roles = _check_splits(root, files, ending, report)
    report.split_sizes = {s: sum(1 for r in roles.values() if r == s) for s in SPLITS}

    cases = files.all_cases()
    for case in _progress(cases, progress):
        _check_case(root, case, roles.get(case), files, meta, num_channels, ending, report)
    report.cases_checked = len(cases)
    if meta is not None and report.split_sizes.get("train"):
        for c, n in enumerate(report.scribble_voxels):
            if n == 0:
                report.warn(
                    root / "scribblesTr",
                    f"no train/val scribble annotates class {c} ({meta.class_names[c]}); "
                    "the network never sees it",
                )
    return report


def _progress(cases: list[str], enabled: bool) -> Iterable[str]:
    if not enabled:
        return cases
    from dmsps.progress import progress_bar

    return progress_bar(cases, desc="check-data", unit="case", leave=False)


# --- dataset.json -------------------------------------------------------------------
def _check_meta(root: Path, report: CheckReport) -> DatasetMeta | None:
    path = root / "dataset.json"
    if not path.is_file():
        report.error(path, "missing (every dataset needs a dataset.json)")
        return None
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        report.error(path, f"malformed JSON ({exc})")
        return None
    try:
        return DatasetMeta.from_json(obj, path)
    except DataError as exc:
        report.error(exc.path, exc.problem)
        return None


def _guess_ending(root: Path) -> str:
    """File ending to assume when dataset.json cannot tell: the most common one."""
    counts = {e: 0 for e in NIFTI_ENDINGS}
    for part in PARTS:
        folder = root / f"images{part}"
        if folder.is_dir():
            for p in folder.iterdir():
                for e in NIFTI_ENDINGS:
                    if p.name.endswith(e):
                        counts[e] += 1
                        break
    return max(NIFTI_ENDINGS, key=lambda e: counts[e])


# --- folder contents ----------------------------------------------------------------
def _scan_folders(root: Path, ending: str, report: CheckReport) -> _Files:
    """Index the data folders, reporting files dmsps would ignore or cannot read."""
    files = _Files()
    for kind in KINDS:
        for part in PARTS:
            folder = root / f"{kind}{part}"
            if not folder.exists():
                continue
            if not folder.is_dir():
                report.error(folder, "should be a folder")
                continue
            for path in sorted(folder.iterdir()):
                name = path.name
                if path.is_dir():
                    report.warn(path, "unexpected folder inside a data folder; ignored")
                elif name.startswith(".") and ".tmp" in name:
                    report.warn(path, "leftover temporary file of an interrupted write; delete it")
                elif not name.endswith(ending):
                    if name.lower().endswith(FOREIGN_IMAGE_ENDINGS):
                        report.error(
                            path,
                            f"not a '{ending}' file (dataset.json file_ending); dmsps ignores "
                            "it. Convert it to NIfTI, e.g. with `dmsps import nifti`",
                        )
                    else:
                        report.warn(path, "stray file; ignored")
                else:
                    _index_file(path, kind, part, ending, files, report)
    return files


def _index_file(
    path: Path, kind: str, part: str, ending: str, files: _Files, report: CheckReport
) -> None:
    stem = path.name[: -len(ending)]
    if kind == "images":
        case, channel = split_channel(stem)
        if channel is None:
            report.warn(path, f"name does not follow <case>_0000{ending}; ignored")
            return
        files.images[part].setdefault(case, {})[channel] = path
    elif kind == "labels":
        files.labels[part][stem] = path
    else:
        files.scribbles[part][stem] = path


# --- splits.json --------------------------------------------------------------------
def _check_splits(root: Path, files: _Files, ending: str, report: CheckReport) -> dict[str, str]:
    """Return the split of every listed case; report splits that cannot be used."""
    path = root / "splits.json"
    default = {c: "train" for c in files.images["Tr"]}
    default.update({c: "test" for c in files.images["Ts"] if c not in default})
    if not path.is_file():
        report.warn(
            path,
            "missing: every imagesTr case trains, every imagesTs case tests, no validation",
        )
        return default
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        report.error(path, f"malformed JSON ({exc})")
        return default
    if not isinstance(obj, dict):
        report.error(path, "must hold an object with train/val/test lists")
        return default
    unknown = sorted(set(obj) - set(SPLITS))
    if unknown:
        report.error(path, f"unknown split(s) {unknown}; use train/val/test")
    roles: dict[str, str] = {}
    existing = set(files.all_cases())
    for split in SPLITS:
        cases = obj.get(split, [])
        if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
            report.error(path, f"'{split}' must be a list of case names")
            continue
        for case in cases:
            if case in roles:
                report.error(path, f"case '{case}' is listed in both '{roles[case]}' and '{split}'")
                continue
            roles[case] = split
            if case not in existing:
                report.error(
                    path,
                    f"{split} case '{case}' has no image "
                    f"(expected imagesTr/{case}_0000{ending} or imagesTs/{case}_0000{ending})",
                )
    if not any(r == "train" for r in roles.values()):
        report.warn(path, "no train cases: this dataset can be evaluated but not trained on")
    for case in sorted(existing - set(roles)):
        part = "Tr" if case in files.images["Tr"] else "Ts"
        report.warn(
            files.images[part][case][min(files.images[part][case])],
            f"case '{case}' is in no split of splits.json; it is never used",
        )
    return {c: r for c, r in roles.items() if c in existing}


# --- one case -----------------------------------------------------------------------
def _check_case(
    root: Path,
    case: str,
    role: str | None,
    files: _Files,
    meta: DatasetMeta | None,
    num_channels: int,
    ending: str,
    report: CheckReport,
) -> None:
    part = "Tr" if case in files.images["Tr"] else "Ts"
    if part == "Tr" and case in files.images["Ts"]:
        other = files.images["Ts"][case]
        report.warn(other[min(other)], f"case '{case}' is also in imagesTr; this copy is ignored")
    channels = files.images[part][case]

    geom = None
    for c in range(num_channels):
        path = channels.get(c, root / f"images{part}" / f"{case}_{c:04d}{ending}")
        if c not in channels:
            report.error(path, f"missing channel {c} of case '{case}'")
            continue
        arr, g = _load(path, report)
        if arr is None:
            continue
        _check_intensities(path, arr, report)
        if geom is None:
            geom = g
        else:
            _check_grid(path, g, geom, "channel 0", report)
    for c in sorted(set(channels) - set(range(num_channels))):
        report.error(channels[c], f"channel {c}, but dataset.json lists {num_channels} channel(s)")

    label_path = files.labels[part].get(case)
    scribble_path = files.scribbles[part].get(case)
    label = scribble = None
    if label_path is None:
        if role in ("val", "test"):
            report.warn(
                root / f"labels{part}" / f"{case}{ending}",
                f"no label for {role} case '{case}': it cannot be evaluated",
            )
    else:
        label = _check_map(label_path, geom, meta, report, kind="label")
    if scribble_path is None:
        if role in ("train", "val"):
            report.error(
                root / f"scribbles{part}" / f"{case}{ending}",
                f"missing scribble for {role} case '{case}'",
            )
    else:
        scribble = _check_map(scribble_path, geom, meta, report, kind="scribble")
    if scribble_path is not None and scribble is not None and meta is not None:
        _check_scribble_content(scribble_path, scribble, label, role, meta, report)


def _load(path: Path, report: CheckReport) -> tuple[np.ndarray | None, Geometry | None]:
    try:
        return load_volume(path, np.float32)
    except DataError as exc:
        report.error(exc.path, exc.problem)
        return None, None


def _check_intensities(path: Path, arr: np.ndarray, report: CheckReport) -> None:
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(arr.size - finite.sum()) - n_nan
        report.error(path, f"{n_nan} NaN and {n_inf} infinite intensities")
    elif arr.size and arr.min() == arr.max():
        report.warn(path, f"image is constant ({float(arr.flat[0]):g} everywhere)")


def _check_grid(path: Path, g: Geometry, ref: Geometry, ref_name: str, report: CheckReport) -> None:
    if problem := g.mismatch(ref, "", ref_name):
        report.error(path, problem.strip())
    elif not np.allclose(g.affine, ref.affine, rtol=1e-4, atol=1e-3):
        report.warn(path, f"same grid as {ref_name} but a different position/orientation")


def _check_map(
    path: Path, geom: Geometry | None, meta: DatasetMeta | None, report: CheckReport, kind: str
) -> np.ndarray | None:
    """Load a label or scribble map; check grid, integer values and value range."""
    arr, g = _load(path, report)
    if arr is None or g is None:
        return None
    if geom is not None:
        _check_grid(path, g, geom, "the image", report)
    try:
        if meta is None:
            check_label(arr, np.iinfo(np.int64).max, path, kind=kind)  # whole numbers only
            return None
        if kind == "label":
            names = f" ({', '.join(meta.class_names)})"
            values = check_label(arr, meta.num_classes, path, context=names)
        else:
            values = check_scribble(arr, meta.num_classes, meta.ignore_value, path)
    except LabelError as exc:
        report.error(path, exc.problem if isinstance(exc, DataError) else str(exc))
        return None
    if geom is not None and g.shape != geom.shape:
        return None
    return values.astype(np.int64)


def _check_scribble_content(
    path: Path,
    scribble: np.ndarray,
    label: np.ndarray | None,
    role: str | None,
    meta: DatasetMeta,
    report: CheckReport,
) -> None:
    ignore = meta.ignore_value
    annotated = scribble != ignore
    n = int(annotated.sum())
    if n == 0:
        msg = f"no annotated voxel (every voxel holds the ignore value {ignore})"
        if role in ("train", "val"):
            report.error(path, msg)
        else:
            report.warn(path, msg)
        return
    if role in ("train", "val"):
        counts = np.bincount(scribble[annotated].ravel(), minlength=meta.num_classes)
        for c in range(meta.num_classes):
            report.scribble_voxels[c] += int(counts[c])
    if n > DENSE_SCRIBBLE_WARN * scribble.size:
        report.warn(
            path,
            f"{100 * n / scribble.size:.0f}% of voxels annotated: is {ignore} really the "
            "unannotated value in this file?",
        )
    if label is not None and label.shape == scribble.shape:
        wrong = int((scribble[annotated] != label[annotated]).sum())
        if wrong > DISAGREEMENT_WARN * n:
            report.warn(
                path,
                f"{100 * wrong / n:.0f}% of annotated voxels disagree with the label; "
                "are the class values the same in both?",
            )

"""Evaluate a folder of predictions against ground truth; write CSV/JSON, format tables.

Used by ``dmsps evaluate`` and by the pipeline::

    summary = evaluate_folders(pred_dir, gt_dir, out_dir)
    print(format_table(summary))

Cases are matched by file name (``<case>.nii.gz`` or ``.nii``). The ground truth is either
a folder of label files or a dataset folder in our layout (``labelsTr``/``labelsTs`` and
``dataset.json`` for the class names). Spacing always comes from the ground truth.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dmsps.data.labels import as_class_map, check_label, max_label
from dmsps.errors import DataError, DmspsError
from dmsps.eval.metrics import (
    METRIC_CONVENTIONS,
    METRICS,
    ClassMetrics,
    evaluate_case_all,
    summarise,
)
from dmsps.io.atomic import json_text, write_text
from dmsps.io.nifti import Geometry, is_nifti, load_volume, strip_ending
from dmsps.io.paths import is_within
from dmsps.progress import note, progress_bar

CONVENTIONS = {
    "name": "monai",
    "units": "HD95 and ASD in mm, using the ground-truth spacing",
    "surface": "mask voxels with a 6-connected neighbour outside the mask or the image",
    "hd95": "max of the two directed 95th percentiles of surface distances (MONAI)",
    "asd": "mean of the pooled pred->gt and gt->pred surface distances (MONAI symmetric)",
    "empty": (
        "both empty: Dice 1, HD95 0, ASD 0; one empty: Dice 0, HD95/ASD undefined "
        "(left out of means, counted as 'undefined')"
    ),
    "std": "population std (ddof=0) over cases",
    "foreground_mean": "per case mean over foreground classes, then mean ± std over cases",
}
#: The authors' test scripts (medpy), for setting our figures beside the paper's.
MEDPY_CONVENTIONS = {
    **CONVENTIONS,
    "name": "medpy",
    "hd95": "95th percentile of the pooled pred->gt and gt->pred surface distances (medpy)",
    "asd": "mean of the pred->gt surface distances (medpy asd)",
    "empty": "prediction or ground truth empty: Dice 0, HD95 0, ASD 0, counted in the means "
    "(the authors' test scripts)",
}
CONVENTION_NOTES = {"monai": CONVENTIONS, "medpy": MEDPY_CONVENTIONS}
#: File-name suffix of each convention's reports (ours keep the plain names).
_SUFFIX = {"monai": "", "medpy": "_medpy"}
_MAX_LISTED = 10


def _warn(message: str) -> None:
    note(f"warning: {message}")


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" … and {more} more" if more > 0 else "")


# --- finding and matching files ------------------------------------------------------------
def _niftis(folder: Path, ending: str | None = None) -> dict[str, Path]:
    """Case name -> file for the NIfTIs in a folder (hidden files, e.g. temporaries, skipped)."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not is_nifti(path):
            continue
        if ending is not None and not path.name.endswith(ending):
            continue
        case = strip_ending(path.name)
        if case in files:
            raise DataError(path, f"case '{case}' also exists as {files[case].name}; keep one")
        files[case] = path
    return files


class _GroundTruth:
    """Label files of the ground truth and, for a dataset folder, its names and splits."""

    def __init__(self, root: Path) -> None:
        from dmsps.data.layout import Dataset

        self.root = root
        self.dataset: Dataset | None = None
        if (root / "dataset.json").is_file():
            self.dataset = Dataset(root)
            end = self.dataset.meta.file_ending
            self.folders = [
                root / f"labels{p}" for p in ("Ts", "Tr") if (root / f"labels{p}").is_dir()
            ]
            kinds = ("images", "labels", "scribbles")
            self.protected = [root / f"{k}{p}" for k in kinds for p in ("Tr", "Ts")]
            self.files: dict[str, Path] = {}
            for folder in self.folders:  # Tr last, so it wins as in Dataset.paths
                self.files.update(_niftis(folder, end))
            if not self.files:
                raise DmspsError(f"{root}: dataset has no label files in labelsTr/ or labelsTs/")
        else:
            self.folders = [root]
            self.protected = [root]
            self.files = _niftis(root)
            if not self.files:
                raise DmspsError(f"{root}: no ground-truth NIfTI files (.nii.gz or .nii)")

    def expected(self, predicted: set[str]) -> set[str]:
        """Cases that should have a prediction.

        A plain folder: all of its files. A dataset: the labelled cases of the first split
        (test, val, train) that contains every prediction, so predicting the test split is
        not reported as missing the training cases; if no split does, just the predictions.
        """
        if self.dataset is None:
            return set(self.files)
        for split in ("test", "val", "train"):
            cases = set(self.dataset.split(split))
            if cases and predicted <= cases:
                unlabelled = sorted(cases - set(self.files))
                if unlabelled:
                    _warn(
                        f"{len(unlabelled)} {split} case(s) have no label file and are not "
                        f"evaluated: {_listing(unlabelled)}"
                    )
                return cases & set(self.files)
        return predicted & set(self.files)


def default_out_dir(pred_dir: str | Path) -> Path:
    """``PRED/../<PRED name>_metrics``: beside the predictions, never inside an input."""
    pred = Path(pred_dir).resolve()
    return pred.parent / f"{pred.name}_metrics"


# --- loading -------------------------------------------------------------------------------
def _load_labels(path: Path, num_classes: int | None) -> tuple[np.ndarray, Geometry]:
    """Label volume as int16 plus geometry; DataError naming the file for non-label data."""
    arr, geom = load_volume(path, np.float32)
    if num_classes is None:
        max_label(arr, path, tolerance=1e-3)  # whole, non-negative numbers
        return as_class_map(arr, path, tolerance=1e-3).astype(np.int16), geom
    context = f" (evaluating {num_classes} classes; is --classes right?)"
    out = check_label(arr, num_classes, path, tolerance=1e-3, context=context)
    return out.astype(np.int16), geom


def _infer_num_classes(paths: Sequence[Path]) -> int:
    """Highest label in the ground truth + 1 (one extra pass over the files)."""
    highest = max(int(_load_labels(p, None)[0].max(initial=0)) for p in paths)
    return max(highest + 1, 2)


def _resolve_names(class_names: Sequence[str] | None, num_classes: int) -> list[str] | None:
    """Names for 0..C-1: given for all classes (background first) or for the foreground only."""
    if class_names is None:
        return None
    names = [str(n).strip() for n in class_names]
    if len(names) == num_classes - 1:
        names = ["background", *names]
    if len(names) != num_classes or not all(names):
        raise DmspsError(
            f"got {len(class_names)} class names for {num_classes} classes; give one per "
            f"label value 0..{num_classes - 1} (background first), or one per foreground class"
        )
    return names


# --- output --------------------------------------------------------------------------------
def _num(value: float | None) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.6f}"


def metrics_csv(
    results: Mapping[str, Mapping[int, ClassMetrics]], class_names: Sequence[str] | None = None
) -> str:
    """``case,class,dice,hd95,asd``, one row per case and foreground class; NaN as ``nan``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["case", "class", *METRICS])
    for case in sorted(results):
        for label, m in sorted(results[case].items()):
            name = class_names[label] if class_names else str(label)
            writer.writerow([case, name, *(_num(getattr(m, k)) for k in METRICS)])
    return buf.getvalue()


def summary_csv(summary: Mapping) -> str:
    """Per-class mean/std/n of each metric, then the foreground-mean row."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    stat_cols = [f"{k}_{s}" for k in METRICS for s in ("mean", "std", "n")]
    writer.writerow(["class", "label", *stat_cols, "undefined"])
    rows = [(c["name"], str(c["label"]), c, c["undefined"]) for c in summary["classes"]]
    total_undefined = sum(c["undefined"] for c in summary["classes"])
    rows.append(("foreground_mean", "", summary["foreground_mean"], total_undefined))
    for name, label, stats, undefined in rows:
        cells = []
        for k in METRICS:
            cells += [_num(stats[k]["mean"]), _num(stats[k]["std"]), str(stats[k]["n"])]
        writer.writerow([name, label, *cells, undefined])
    return buf.getvalue()


def format_table(summary: Mapping) -> str:
    """Readable class × (Dice, HD95, ASD) table of mean ± std, with a note on exclusions."""
    cases = summary["cases"]
    digits = {"dice": 4, "hd95": 2, "asd": 2}

    def cell(stats: Mapping, metric: str) -> str:
        if stats["mean"] is None:
            return "-"
        d = digits[metric]
        text = f"{stats['mean']:.{d}f} ± {stats['std']:.{d}f}"
        return text + (f" (n={stats['n']})" if stats["n"] < cases else "")

    header = ["class", "Dice", "HD95 (mm)", "ASD (mm)"]
    rows = [[c["name"], *(cell(c[k], k) for k in METRICS)] for c in summary["classes"]]
    if len(summary["classes"]) > 1:
        rows.append(["mean (fg)", *(cell(summary["foreground_mean"][k], k) for k in METRICS)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    name = summary.get("conventions", {}).get("name", "monai")
    lines.append(f"{cases} case(s); mean ± std over cases; {name} convention.")
    if name == "medpy":
        lines.append(
            "medpy convention (the authors' test scripts): a class empty in prediction or "
            "ground truth scores 0 on all three metrics."
        )
    undefined = [f"{c['name']} {c['undefined']}" for c in summary["classes"] if c["undefined"]]
    if undefined:
        lines.append(
            "HD95/ASD undefined where exactly one of prediction and ground truth is empty, "
            f"left out of the means: {', '.join(undefined)}."
        )
    return "\n".join(lines)


# --- the whole evaluation ------------------------------------------------------------------
def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    out_dir: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
    *,
    num_classes: int | None = None,
    allow_missing: bool = False,
    conventions: Sequence[str] = ("monai",),
    force: bool = True,
) -> dict:
    """Score every prediction against its ground truth; write the reports; return the summary.

    ``out_dir`` (default ``default_out_dir(pred_dir)``) receives ``metrics.csv``,
    ``summary.csv`` and ``summary.json``, each written atomically. The number of classes
    (background included) comes from ``num_classes``, else dataset.json, else the highest
    ground-truth label. Predictions without ground truth and expected cases without a
    prediction are an error unless ``allow_missing``, which warns and scores the rest.
    The returned summary is ``metrics.summarise`` plus ``conventions``, as in summary.json.

    ``conventions`` (``monai``, ``medpy`` or both, first one returned) chooses how empty
    classes and distances are scored; ``medpy`` reports go to ``*_medpy.*`` files and,
    when not first, under ``other_conventions`` of the returned summary.

    ``force=False`` (``dmsps evaluate`` without --force) refuses to replace a report in
    ``out_dir`` that holds other results; the same results again are written as before.
    """

    conventions = tuple(dict.fromkeys(conventions))
    bad = [c for c in conventions if c not in METRIC_CONVENTIONS]
    if bad or not conventions:
        raise DmspsError(
            f"metric convention must be one of {', '.join(METRIC_CONVENTIONS)}, got {bad}"
        )
    pred_root, gt_root = Path(pred_dir), Path(gt_dir)
    for what, folder in (("prediction", pred_root), ("ground-truth", gt_root)):
        if not folder.is_dir():
            raise DmspsError(f"{folder}: {what} folder not found")
    out = Path(out_dir).resolve() if out_dir is not None else default_out_dir(pred_root)
    truth = _GroundTruth(gt_root)
    # Never write into an input: not into the predictions, the ground truth or a dataset's
    # data folders, nor straight into a dataset root (a new folder inside it is fine).
    inside = [pred_root.resolve(), *(f.resolve() for f in truth.protected)]
    if any(is_within(out, f) for f in inside) or out == gt_root.resolve():
        raise DmspsError(f"{out}: output folder is inside an input folder; choose another --out")
    if out.exists() and not out.is_dir():
        raise DmspsError(f"{out}: output path exists and is not a folder")

    preds = _niftis(pred_root)
    if not preds:
        raise DmspsError(f"{pred_root}: no prediction NIfTI files (.nii.gz or .nii)")
    no_truth = sorted(set(preds) - set(truth.files))
    no_pred = sorted(truth.expected(set(preds)) - set(preds))
    if no_truth or no_pred:
        parts = []
        if no_truth:
            parts.append(
                f"{len(no_truth)} prediction(s) without ground truth: {_listing(no_truth)}"
            )
        if no_pred:
            parts.append(
                f"{len(no_pred)} ground-truth case(s) without prediction: {_listing(no_pred)}"
            )
        message = "; ".join(parts)
        if not allow_missing:
            raise DmspsError(f"{message} (pass --allow-missing to evaluate the matched cases)")
        _warn(f"{message}; evaluating the matched cases only")
    cases = sorted(set(preds) & set(truth.files))
    if not cases:
        raise DmspsError(f"no prediction in {pred_root} matches a ground-truth file by name")

    if num_classes is None and truth.dataset is not None:
        num_classes = truth.dataset.meta.num_classes
    if num_classes is None:
        num_classes = _infer_num_classes([truth.files[c] for c in cases])
        note(
            f"evaluating {num_classes} classes (labels 0..{num_classes - 1} as found in the "
            "ground truth; --classes sets the number)"
        )
    if num_classes < 2:
        raise DmspsError(
            f"need at least 2 classes (background and one structure), got {num_classes}"
        )
    names = _resolve_names(class_names, num_classes)
    if names is None and truth.dataset is not None:
        dataset_names = truth.dataset.meta.class_names
        names = dataset_names if len(dataset_names) == num_classes else None

    results: dict[str, dict[str, dict[int, ClassMetrics]]] = {c: {} for c in conventions}
    # A context manager, so an error ends the bar's line before the error is printed.
    with progress_bar(total=len(cases), desc="evaluate", unit="case", disable=not progress) as bar:
        for case in cases:
            gt, gt_geom = _load_labels(truth.files[case], num_classes)
            pred, pred_geom = _load_labels(preds[case], num_classes)
            if pred.shape != gt.shape:
                raise DataError(
                    preds[case],
                    f"shape {pred.shape} (Z, Y, X) differs from the ground truth's {gt.shape} "
                    f"({truth.files[case]})",
                )
            if not np.allclose(pred_geom.spacing, gt_geom.spacing, rtol=1e-3, atol=1e-4):
                _warn(
                    f"{preds[case]}: spacing {pred_geom.spacing} differs from the ground truth's "
                    f"{gt_geom.spacing}; using the ground truth's"
                )
            scores = evaluate_case_all(pred, gt, gt_geom.spacing, num_classes, conventions)
            for c in conventions:
                results[c][case] = scores[c]
            bar.update()

    summaries, reports = {}, {}
    for c in conventions:
        summary = summarise([results[c][k] for k in cases], names)
        summary["conventions"] = dict(CONVENTION_NOTES[c])
        suffix = _SUFFIX[c]
        reports[out / f"metrics{suffix}.csv"] = metrics_csv(results[c], names)
        reports[out / f"summary{suffix}.csv"] = summary_csv(summary)
        reports[out / f"summary{suffix}.json"] = json_text(summary)
        summaries[c] = summary
    for path, text in reports.items():
        if not force and path.is_file() and path.read_text(errors="replace") != text:
            raise DmspsError(f"{path}: holds other results; use --force to replace it")
    for path, text in reports.items():
        write_text(path, text)
    first = summaries[conventions[0]]
    if len(conventions) > 1:
        first = {**first, "other_conventions": {c: summaries[c] for c in conventions[1:]}}
    return first

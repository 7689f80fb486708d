"""The dataset as the annotation page sees it.

Everything the server answers comes from here: the cases with their annotation status,
2D slices of an image, its reference label, the model's prediction and uncertainty (in
any of the three planes), whole scribble volumes (uint8, small once compressed), and the
scribble save.

Memory stays bounded whatever the volume size: images are held as float32 (never
float64), labels and model outputs as uint8, in one least-recently-used cache with a
byte budget; a request copies one slice. A 512 x 512 x 200 CT case costs 210 MB as
float32 plus 52 MB per uint8 map; the default budget (1 GiB) holds it with its label and
prediction, and opening another case evicts the oldest entries.

The save refuses anything it cannot apply exactly (unknown case, a class dataset.json
does not list, a voxel outside the image, a malformed request) before writing anything;
it writes ``scribbles{Tr,Ts}/<case>`` atomically on the image's grid (affine kept), keeps
the file it replaces in ``scribbles{Tr,Ts}.bak/``, and never opens an image or label for
writing. Saves of one case are serialised, so two tabs saving at once leave the strokes
of both, one after the other, in one whole file.
"""

from __future__ import annotations

import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmsps.annotate import suggestions
from dmsps.data.layout import Dataset
from dmsps.errors import DataError, DmspsError
from dmsps.io.atomic import atomic_path
from dmsps.io.lock import folder_lock
from dmsps.io.nifti import Geometry, read_geometry

PLANES = ("axial", "coronal", "sagittal")
LAYERS = ("image", "label", "prediction", "uncertainty", "disagreement")

#: Up to this many voxels are sampled to choose an image's automatic window.
_WINDOW_SAMPLES = 1 << 20


class RequestError(DmspsError):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def read_class_map(path: Path, grid: Geometry, what: str, check) -> np.ndarray:
    """A label or scribble file as a uint8 (Z, Y, X) map on ``grid``, its values checked
    by ``check`` (``dmsps.data.labels``) a few slices at a time.

    Integer files are read in their own type, never widened to float32 or int64 in
    whole: a 512 x 512 x 200 CT map costs its 52 MB plus a slab, not a gigabyte.
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
        proxy = img.dataobj
        scaled = float(getattr(proxy, "slope", 1.0)) != 1.0 or float(getattr(proxy, "inter", 0.0))
        if np.issubdtype(img.get_data_dtype(), np.integer) and not scaled:
            data = np.asanyarray(proxy)
        else:
            data = img.get_fdata(dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for damaged files
        raise DataError(
            path, f"cannot read NIfTI ({type(exc).__name__}); the file is damaged: save it again"
        ) from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise DataError(path, f"expected a 3D {what}, got shape {tuple(data.shape)}")
    zyx = np.transpose(data, (2, 1, 0))  # a view: slabs are copied one at a time
    geom = Geometry(np.asarray(img.affine, np.float64), tuple(int(s) for s in zyx.shape))
    if problem := geom.mismatch(grid, what, "the image's"):
        raise DataError(path, problem)
    out = np.empty(zyx.shape, np.uint8)
    step = max(1, (1 << 22) // max(1, zyx.shape[1] * zyx.shape[2]))
    for start in range(0, zyx.shape[0], step):
        out[start : start + step] = check(np.ascontiguousarray(zyx[start : start + step]))
    return out


def take_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2D slice of a (Z, Y, X) volume: axial (Y, X) at z, coronal (Z, X) at y,
    sagittal (Z, Y) at x; rows in array order."""
    if plane == "axial":
        return volume[index]
    if plane == "coronal":
        return volume[:, index, :]
    return volume[:, :, index]


def plane_depth(shape: tuple[int, int, int], plane: str) -> int:
    return shape[{"axial": 0, "coronal": 1, "sagittal": 2}[plane]]


class ByteCache:
    """A least-recently-used cache bounded by the bytes of what it holds.

    ``get(key, load)`` returns the cached value or calls ``load() -> (value, nbytes)``
    once, even when several threads ask for the same key at the same time (the others
    wait), so a volume is never read twice at once. The entry just loaded always stays,
    even when alone it is over the budget.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(n for _, n in self._items.values())

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def get(self, key: Hashable, load: Callable[[], tuple[Any, int]]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key][0]
            try:
                value, nbytes = load()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self._items[key] = (value, int(nbytes))
                self._items.move_to_end(key)
                total = sum(n for _, n in self._items.values())
                while total > self.max_bytes and len(self._items) > 1:
                    _, (_, n) = self._items.popitem(last=False)
                    total -= n
            return value

    def drop(self, keep: Callable[[Hashable], bool]) -> None:
        """Forget every entry whose key ``keep`` rejects."""
        with self._lock:
            for key in [k for k in self._items if not keep(k)]:
                del self._items[key]


@dataclass
class CaseImage:
    array: np.ndarray  # float32 (C, Z, Y, X)
    geometry: Geometry
    windows: list[dict]  # per channel: low, high (automatic window), min, max

    @property
    def nbytes(self) -> int:
        return self.array.nbytes


def auto_windows(array: np.ndarray) -> list[dict]:
    """Per channel: the 0.5 and 99.5 percentiles of a regular sample of the voxels (the
    automatic window), and the minimum and maximum."""
    out = []
    for channel in array:
        flat = channel.reshape(-1)
        step = max(1, flat.size // _WINDOW_SAMPLES)
        sample = flat[::step]
        low, high = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
        if high <= low:
            high = low + 1.0
        out.append(
            {"low": low, "high": high, "min": float(channel.min()), "max": float(channel.max())}
        )
    return out


class Workspace:
    """A dataset folder opened for annotation, with an optional model."""

    def __init__(
        self,
        root: str | Path,
        cache_bytes: int = 1 << 30,
        model: str | Path | None = None,
        device: str = "auto",
    ) -> None:
        self.ds = Dataset(root)
        self.root = self.ds.root
        self.cache = ByteCache(cache_bytes)
        self.device = device
        meta = self.ds.meta
        self.class_names = meta.class_names
        self.num_classes = meta.num_classes
        self.ignore = meta.ignore_value
        self._part: dict[str, str] = {}
        for part in ("Ts", "Tr"):  # Tr wins, as in Dataset.paths
            for case in self.ds.cases_in(part):
                self._part[case] = part
        if not self._part:
            raise DmspsError(
                f"{self.root}: no cases (no <case>_0000{meta.file_ending} in imagesTr or imagesTs)"
            )
        if self.ignore > 255:
            raise DmspsError(
                f"{self.root}: the page draws up to 255 classes; dataset.json has "
                f"{self.num_classes}"
            )
        self._split: dict[str, str] = {}
        for split in ("test", "val", "train"):
            for case in self.ds.split(split):
                self._split[case] = split
        self._geometry: dict[str, Geometry] = {}
        self._status: dict[str, tuple[tuple, dict | None]] = {}
        self._status_lock = threading.Lock()
        self._save_locks: dict[str, threading.Lock] = {}
        self._save_locks_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self.predictor = None
        self.model_path: Path | None = None
        self.model_version = 0
        self._scores: dict[tuple[int, str], suggestions.CaseScores] = {}
        if model is not None:
            self.set_model(model)

    # --- cases ---------------------------------------------------------------------
    @property
    def cases(self) -> list[str]:
        return sorted(self._part)

    def check_case(self, case: object) -> str:
        """``case`` if it names a case of the dataset; anything else (a path, ``../x``)
        is refused, and no path is ever made from a name that is not a known case."""
        if not isinstance(case, str) or case not in self._part:
            shown = repr(case)[:80]
            raise RequestError(f"no case {shown} in the dataset {self.root.name}", 404)
        return case

    def split_of(self, case: str) -> str:
        return self._split.get(case, "train" if self._part[case] == "Tr" else "test")

    def train_cases(self) -> list[str]:
        return [c for c in self.cases if self.split_of(c) == "train"]

    def geometry(self, case: str) -> Geometry:
        case = self.check_case(case)
        if case not in self._geometry:
            self._geometry[case] = read_geometry(self.ds.paths(case).images[0])
        return self._geometry[case]

    def scribble_target(self, case: str) -> Path:
        part = self._part[self.check_case(case)]
        return self.root / f"scribbles{part}" / f"{case}{self.ds.meta.file_ending}"

    def backup_path(self, case: str) -> Path:
        part = self._part[self.check_case(case)]
        return self.root / f"scribbles{part}.bak" / f"{case}{self.ds.meta.file_ending}"

    def case_entry(self, case: str) -> dict:
        geom = self.geometry(case)
        paths = self.ds.paths(case)
        return {
            "name": case,
            "split": self.split_of(case),
            "shape": list(geom.shape),
            "spacing": [round(s, 6) for s in geom.spacing],
            "has_label": paths.label is not None,
            "status": self.cached_status(case),
        }

    # --- annotation status -----------------------------------------------------------
    def _stamp(self, case: str) -> tuple:
        path = self.scribble_target(case)
        try:
            st = path.stat()
        except FileNotFoundError:
            return ("none",)
        return (st.st_mtime_ns, st.st_size)

    def scribble_version(self, case: str) -> str:
        return "-".join(str(v) for v in self._stamp(case))

    def cached_status(self, case: str) -> dict | None:
        """The status last computed for the scribble file as it is now, else None."""
        with self._status_lock:
            entry = self._status.get(case)
        if entry is not None and entry[0] == self._stamp(case):
            return entry[1]
        return None

    def status(self, case: str) -> dict:
        """Slices scribbled in all and per class (along Z) and voxels per class."""
        cached = self.cached_status(case)
        if cached is not None:
            return cached
        stamp = self._stamp(case)
        scribble = self._load_scribble(case)
        depth = self.geometry(case).shape[0]
        result = status_of(scribble, self.num_classes, self.ignore, depth)
        with self._status_lock:
            self._status[case] = (stamp, result)
        return result

    # --- images and maps -------------------------------------------------------------
    def image(self, case: str) -> CaseImage:
        case = self.check_case(case)

        def load():
            array, geom = self.ds.load_image(case)
            item = CaseImage(array, geom, auto_windows(array))
            return item, item.nbytes

        return self.cache.get(("image", case), load)

    def label(self, case: str) -> np.ndarray | None:
        case = self.check_case(case)

        def load():
            from dmsps.data.labels import check_label

            path = self.ds.paths(case).label
            if path is None:
                return None, 0
            names = ", ".join(self.class_names)
            context = f" (dataset.json's classes: {names}); fix the label or the classes"
            arr = read_class_map(
                path,
                self.geometry(case),
                "label",
                lambda a: check_label(a, self.num_classes, path, tolerance=1e-3, context=context),
            )
            return arr, arr.nbytes

        return self.cache.get(("label", case), load)

    def prediction(self, case: str) -> suggestions.CaseMaps:
        """The model's maps of ``case`` (computed on first use, then cached)."""
        case = self.check_case(case)
        if self.predictor is None:
            raise RequestError("no model loaded: start with --model, or train one", 409)
        version = self.model_version

        def load():
            item = self.image(case)
            with self._model_lock:
                maps = suggestions.case_maps(self.predictor, item.array, item.geometry.spacing)
            self._scores[(version, case)] = maps.scores
            return maps, maps.nbytes

        return self.cache.get(("prediction", version, case), load)

    def slice(self, case: str, layer: str, plane: str, index: int, channel: int = 0):
        """One 2D slice of a layer: float32 for the image, uint8 for the maps (the
        uncertainty as round(255 u)); None when the case has no such layer."""
        case = self.check_case(case)
        if layer not in LAYERS:
            raise RequestError(f"unknown layer '{layer}' (choose from {', '.join(LAYERS)})")
        if plane not in PLANES:
            raise RequestError(f"unknown plane '{plane}' (choose from {', '.join(PLANES)})")
        shape = self.geometry(case).shape
        depth = plane_depth(shape, plane)
        if not 0 <= index < depth:
            raise RequestError(f"{plane} slice {index} is outside 0..{depth - 1} of '{case}'")
        if layer == "image":
            n = self.ds.num_channels
            if not 0 <= channel < n:
                raise RequestError(f"channel {channel} is outside 0..{n - 1}")
            volume = self.image(case).array[channel]
            return np.ascontiguousarray(take_slice(volume, plane, index), np.float32)
        if layer == "label":
            volume = self.label(case)
            if volume is None:
                return None
        else:
            maps = self.prediction(case)
            volume = {
                "prediction": maps.labels,
                "uncertainty": maps.uncertainty,
                "disagreement": maps.disagreement,
            }[layer]
        return np.ascontiguousarray(take_slice(volume, plane, index), np.uint8)

    # --- scribbles -------------------------------------------------------------------
    def _load_scribble(self, case: str) -> np.ndarray | None:
        """The scribble file of ``case`` as uint8 (Z, Y, X), checked against the image's
        grid and the classes; None when there is none."""
        from dmsps.data.labels import check_scribble

        path = self.scribble_target(case)
        if not path.is_file():
            return None
        context = "; fix the scribble, or the classes in dataset.json"
        return read_class_map(
            path,
            self.geometry(case),
            "scribble",
            lambda a: check_scribble(a, self.num_classes, self.ignore, path, context=context),
        )

    def scribble_volume(self, case: str) -> tuple[np.ndarray, str]:
        """(the case's scribble as a (Z, Y, X) uint8 volume, all unannotated when there is
        no file yet; its version stamp)."""
        case = self.check_case(case)
        lock = self._save_lock(case)
        with lock:
            version = self.scribble_version(case)
            scribble = self._load_scribble(case)
        if scribble is None:
            scribble = np.full(self.geometry(case).shape, self.ignore, np.uint8)
        return scribble, version

    def _save_lock(self, case: str) -> threading.Lock:
        with self._save_locks_lock:
            return self._save_locks.setdefault(case, threading.Lock())

    def parse_strokes(self, case: str, payload: object) -> list[tuple[int, np.ndarray]]:
        """Check a save request; return its strokes as (value, (N, 3) voxel indices).

        ``payload`` is ``{"shape": [Z, Y, X], "strokes": [{"value": v, "voxels":
        [z0, y0, x0, z1, ...]}, ...]}``; ``value`` is a class of dataset.json or the
        unannotated value (the eraser). Every problem is refused with what it is."""
        shape = self.geometry(case).shape
        if not isinstance(payload, dict):
            raise RequestError('the body must be a JSON object {"shape": ..., "strokes": [...]}')
        unknown = set(payload) - {"shape", "strokes", "base"}
        if unknown:
            raise RequestError(f"unknown field(s) {sorted(unknown)} in the save request")
        claimed = payload.get("shape")
        if claimed is not None and claimed != list(shape):
            raise RequestError(
                f"the strokes were drawn on a {claimed} volume, case '{case}' is {list(shape)}"
            )
        strokes = payload.get("strokes")
        if not isinstance(strokes, list):
            raise RequestError("'strokes' must be a list")
        names = ", ".join(f"{v} {n}" for v, n in enumerate(self.class_names))
        out = []
        for i, stroke in enumerate(strokes, 1):
            if not isinstance(stroke, dict) or set(stroke) - {"value", "voxels"}:
                raise RequestError(f'stroke {i} must be {{"value": class, "voxels": [...]}}')
            value = stroke.get("value")
            if not _is_int(value) or not (0 <= value < self.num_classes or value == self.ignore):
                raise RequestError(
                    f"stroke {i}: class {value!r} is not in dataset.json (classes: {names}; "
                    f"{self.ignore} erases)"
                )
            voxels = stroke.get("voxels")
            if not isinstance(voxels, list) or len(voxels) % 3 or not all(map(_is_int, voxels)):
                raise RequestError(
                    f"stroke {i}: 'voxels' must be a flat list of integer (z, y, x) triples"
                )
            try:
                idx = np.asarray(voxels, np.int64).reshape(-1, 3)
            except OverflowError:
                raise RequestError(
                    f"stroke {i} reaches a voxel far outside the image of {shape[0]} x "
                    f"{shape[1]} x {shape[2]} voxels; nothing was saved"
                ) from None
            inside = (idx >= 0).all(1) & (idx < np.asarray(shape)).all(1)
            if not inside.all():
                z, y, x = (int(v) for v in idx[np.argmin(inside)])
                raise RequestError(
                    f"stroke {i} reaches voxel (z={z}, y={y}, x={x}), outside the image of "
                    f"{shape[0]} x {shape[1]} x {shape[2]} voxels; nothing was saved"
                )
            out.append((int(value), idx))
        return out

    def save_scribble(self, case: str, payload: object) -> dict:
        """Apply the strokes of a save request to the case's scribble file."""
        case = self.check_case(case)
        strokes = self.parse_strokes(case, payload)
        base = payload.get("base") if isinstance(payload, dict) else None
        geom = self.geometry(case)
        target = self.scribble_target(case)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._save_lock(case), folder_lock(target.parent):
            before = self.scribble_version(case)
            current = self._load_scribble(case)
            if current is None:
                current = np.full(geom.shape, self.ignore, np.uint8)
            for value, idx in strokes:
                current[idx[:, 0], idx[:, 1], idx[:, 2]] = value
            if target.is_file():
                backup = self.backup_path(case)
                with atomic_path(backup, suffix=self.ds.meta.file_ending) as tmp:
                    shutil.copyfile(target, tmp)
            _save_map(target, current, geom)
            version = self.scribble_version(case)
            result = status_of(current, self.num_classes, self.ignore, geom.shape[0])
            with self._status_lock:
                self._status[case] = (self._stamp(case), result)
        return {
            "case": case,
            "version": version,
            "status": result,
            "merged": base is not None and base != before,
            "voxels": int(sum(len(idx) for _, idx in strokes)),
        }

    # --- the model -------------------------------------------------------------------
    def set_model(self, model: str | Path) -> None:
        predictor = suggestions.load_predictor(model, self.ds, self.device)
        with self._model_lock:
            self.predictor = predictor
            self.model_path = Path(predictor.path)
            self.model_version += 1
            version = self.model_version
            self._scores = {k: v for k, v in self._scores.items() if k[0] == version}
        self.cache.drop(lambda key: key[0] != "prediction")

    def model_info(self) -> dict | None:
        if self.predictor is None:
            return None
        return {
            "path": str(self.model_path),
            "version": self.model_version,
            "spatial_dims": int(self.predictor.meta.get("spatial_dims", 2)),
        }

    def suggest(
        self,
        unit: str = "slice",
        top: int | None = 20,
        cases: list[str] | None = None,
        on_case: Callable[[int, int], None] | None = None,
    ) -> list[suggestions.Suggestion]:
        """Rank the training cases' slices (or cases) without scribbles."""
        if self.predictor is None:
            raise RequestError("suggestions need a model: start with --model, or train one", 409)
        if unit not in suggestions.UNITS:
            raise RequestError(f"unknown unit '{unit}' (choose from slice, case)")
        version = self.model_version
        cases = self.train_cases() if cases is None else [self.check_case(c) for c in cases]
        scores, flags = {}, {}
        for i, case in enumerate(cases):
            key = (version, case)
            if key not in self._scores:
                self.prediction(case)
            if key in self._scores:
                scores[case] = self._scores[key]
                status = self.status(case)
                flags[case] = np.asarray(status["slices"], bool)
            if on_case is not None:
                on_case(i + 1, len(cases))
        return suggestions.rank(scores, flags, unit, top)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def status_of(scribble: np.ndarray | None, num_classes: int, ignore: int, depth: int) -> dict:
    """Annotation status: per slice (Z) whether it holds a scribble, the number of
    scribbled slices in all and per class, and the scribbled voxels per class."""
    if scribble is None:
        return {
            "slices": [False] * depth,
            "scribbled_slices": 0,
            "slices_per_class": [0] * num_classes,
            "voxels_per_class": [0] * num_classes,
        }
    per_class, voxels = [], []
    flat = scribble.reshape(scribble.shape[0], -1)
    for c in range(num_classes):
        hit = flat == c
        per_class.append(int(hit.any(axis=1).sum()))
        voxels.append(int(hit.sum()))
    annotated = (flat != ignore).any(axis=1)
    return {
        "slices": [bool(v) for v in annotated],
        "scribbled_slices": int(annotated.sum()),
        "slices_per_class": per_class,
        "voxels_per_class": voxels,
    }


def _save_map(path: Path, array: np.ndarray, geom: Geometry) -> None:
    from dmsps.io.nifti import save_volume

    dtype = np.uint8 if int(array.max(initial=0)) <= 255 else np.int16
    save_volume(path, array, geom, dtype)

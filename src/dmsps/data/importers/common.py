"""What every importer shares: loading a source case into our conventions, splitting,
and writing the dataset folder safely.

An importer is one module in this package that defines ``IMPORTER`` (an ``Importer``):
its name on the command line, its help, its options and the function that runs it. The
package finds them by itself (``dmsps.data.importers.IMPORTERS``), so adding a source is
one new module plus its test.

Every importer validates as it goes (missing files or keys, grids that differ, values
outside the class range) and raises ``DataError`` naming the source file, never writes
into its source folders, and writes dataset.json last so a folder holding it is complete.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dmsps.data.labels import (
    check_label,
    convert_scribble,
    parse_value_map,
    remap,
)
from dmsps.data.layout import (
    LAYOUT_ENTRIES,
    SPLITS,
    DatasetMeta,
    DatasetWriter,
    load_channels,
)
from dmsps.errors import DataError, DmspsError, listing
from dmsps.io.nifti import Geometry, load_volume, strip_ending
from dmsps.io.paths import is_within


@dataclass
class Importer:
    """One source format: ``dmsps import NAME ...`` (see the package docstring)."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], ImportResult]


@dataclass
class CaseData:
    """One case in memory, already in dmsps conventions (scribble ignore value = C)."""

    image: np.ndarray  # (channels, Z, Y, X)
    geometry: Geometry
    label: np.ndarray | None
    scribble: np.ndarray | None
    scribble_source: Path | None = None  # for messages about the scribble


@dataclass
class SourceCase:
    """A case of the source dataset: its name, split and how to load it."""

    name: str
    split: str
    load: Callable[[], CaseData]


@dataclass
class ImportResult:
    out: Path
    splits: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        sizes = ", ".join(f"{k} {len(self.splits.get(k, []))}" for k in SPLITS)
        total = sum(len(v) for v in self.splits.values())
        return (
            f"imported {total} cases into {self.out} ({sizes}); "
            f"check it with: dmsps check-data {self.out}"
        )


# === shared helpers ===================================================================
def prepare_output(out: Path, sources: Iterable[Path], overwrite: bool) -> None:
    """Refuse to write into a source or over existing data unless ``overwrite``."""
    for src in sources:
        if is_within(out, src):
            raise DmspsError(
                f"{out}: output folder lies inside the source {src}; importers never write "
                "into their input, choose a folder elsewhere"
            )
        if is_within(src, out):
            raise DmspsError(f"{out}: output folder contains the source {src}; choose another")
    if out.exists() and not out.is_dir():
        raise DmspsError(
            f"{out}: exists and is not a folder; choose another path or move the file away"
        )
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            hint = (
                ""
                if (out / "dataset.json").exists()
                else " (it has no dataset.json: an interrupted import?)"
            )
            raise DmspsError(
                f"{out}: output folder is not empty{hint}; choose a new folder, or use "
                "--force to replace it (same as --overwrite)"
            )
        _remove_layout(out)


def _remove_layout(out: Path) -> None:
    """Delete what an import writes (and nothing else) from ``out``.

    dataset.json goes first: an interrupted removal leaves a folder marked incomplete.
    """
    for name in LAYOUT_ENTRIES:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def write_dataset(
    out: Path,
    meta: DatasetMeta,
    cases: Sequence[SourceCase],
    progress: bool = True,
    desc: str = "import",
) -> ImportResult:
    """Load, check and write every case, then dataset.json and splits.json.

    On any failure (bad source file, Ctrl-C) the partial output is removed again, so the
    same command can simply be rerun once the source is fixed.
    """
    existed = out.exists()
    try:
        return _write_cases(out, meta, cases, progress, desc)
    except BaseException:
        _remove_layout(out)
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _write_cases(
    out: Path, meta: DatasetMeta, cases: Sequence[SourceCase], progress: bool, desc: str
) -> ImportResult:
    from dmsps.progress import progress_bar

    writer = DatasetWriter(out, meta)
    result = ImportResult(out, {s: [] for s in SPLITS})
    for case in progress_bar(cases, desc=desc, unit="case", disable=not progress, leave=False):
        data = case.load()
        if data.scribble is not None and not (data.scribble != meta.ignore_value).any():
            result.warnings.append(
                f"{data.scribble_source}: warning: scribble of '{case.name}' has no annotated voxel"
            )
        writer.write_case(
            case.name,
            data.image,
            data.geometry,
            label=data.label,
            scribble=data.scribble,
            test=case.split == "test",
        )
        result.splits[case.split].append(case.name)
    writer.finish(result.splits)
    return result


def _same_shape(arr: np.ndarray, ref_shape: tuple[int, ...], path: Path, what: str) -> None:
    if tuple(arr.shape) != tuple(ref_shape):
        raise DataError(
            path, f"{what} shape {tuple(arr.shape)} differs from image shape {ref_shape}"
        )


def random_split(
    groups: dict[str, list[str]],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, str]:
    """Deterministic group-level split (a group's cases stay together); case -> split.

    With at least three groups, val and test get at least one group each when their
    fraction is positive, so a small dataset still validates.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DmspsError("--val-fraction and --test-fraction must be in [0, 1) with sum < 1")
    names = sorted(groups)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n = len(order)
    n_val = round(val_fraction * n)
    n_test = round(test_fraction * n)
    if n >= 3:
        n_val = max(n_val, 1) if val_fraction > 0 else 0
        n_test = max(n_test, 1) if test_fraction > 0 else 0
    n_val = min(n_val, max(n - 1, 0))
    n_test = min(n_test, max(n - 1 - n_val, 0))
    out: dict[str, str] = {}
    for i, g in enumerate(order):
        split = "val" if i < n_val else "test" if i < n_val + n_test else "train"
        for case in groups[g]:
            out[case] = split
    return out


def read_splits_file(path: Path) -> dict[str, list[str]]:
    """A JSON object with optional "train"/"val"/"test" lists of names."""
    if not path.is_file():
        raise DataError(path, "splits file not found")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"malformed JSON ({exc})") from None
    if not isinstance(obj, dict) or set(obj) - set(SPLITS):
        raise DataError(
            path, 'must be an object like {"train": [...], "val": [...], "test": [...]}'
        )
    out = {}
    for s in SPLITS:
        names = obj.get(s, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(path, f"'{s}' must be a list of names")
        out[s] = names
    return out


def assign_from_splits(
    path: Path, splits: dict[str, list[str]], groups: dict[str, list[str]]
) -> dict[str, str]:
    """Case -> split from a splits file whose entries are group or case names."""
    case_to_group = {c: g for g, cs in groups.items() for c in cs}
    out: dict[str, str] = {}
    for split, names in splits.items():
        for name in names:
            cases = groups.get(name) or ([name] if name in case_to_group else None)
            if cases is None:
                raise DataError(path, f"'{name}' ({split}) matches no case of the source")
            for c in cases:
                if c in out and out[c] != split:
                    raise DataError(path, f"case '{c}' is in both '{out[c]}' and '{split}'")
                out[c] = split
    missing = sorted(set(case_to_group) - set(out))
    if missing:
        raise DataError(path, f"{len(missing)} case(s) are in no split: {listing(missing, 5)}")
    return out


def load_simulator(density: float) -> Callable[..., np.ndarray]:
    if not 0.0 < density <= 1.0:
        raise DmspsError(f"--scribble-density must be in (0, 1], got {density}")
    from dmsps.data.simulation import simulate_scribble

    return simulate_scribble


def case_seed(seed: int, case: str) -> np.random.Generator:
    """Per-case generator: a case's simulated scribble does not depend on the other cases."""
    return np.random.default_rng([seed, zlib.crc32(case.encode())])


def index_by_stem(folders: Sequence[Path], recursive: bool) -> dict[str, Path]:
    """Stem -> NIfTI path; the same stem twice is an error (which one would be meant?)."""
    out: dict[str, Path] = {}
    for folder in folders:
        paths = folder.rglob("*") if recursive else folder.iterdir()
        for p in sorted(paths):
            stem = strip_ending(p.name)
            if not p.is_file() or stem == p.name or p.name.startswith("."):
                continue
            if stem in out and out[stem] != p:
                raise DataError(p, f"ambiguous: {out[stem]} has the same name")
            out[stem] = p
    return out


#: How simulated scribbles are drawn: "dmsps", ours (dmsps.data.simulation), or
#: "authors", the DMSPS authors' generator behind the paper's WORD and BraTS scribbles
#: (dmsps.data.authors_scribbles).
SCRIBBLE_STYLES = ("dmsps", "authors")


@dataclass
class ScribbleOptions:
    """How scribbles of a source become ours: value conversion or simulation.

    ``unannotated`` None: each scribble file's unannotated value is detected from its
    values (``SourceValues.unannotated_in``; only for sources that name their values).
    """

    unannotated: int | None
    value_map: Mapping[int, int] = field(default_factory=dict)
    simulate: bool = False
    density: float = 1.0
    slice_step: int = 1  # annotate only every N-th slice (axis 0)
    seed: int = 0
    background_regions: int = 1  # background pieces per slice that get a stroke
    style: str = "dmsps"  # one of SCRIBBLE_STYLES
    erosion: tuple[int, int] = (1, 7)  # the authors' style: erosions before the skeleton

    def simulator(self) -> Callable[..., np.ndarray] | None:
        """Check the options (before anything is written); the simulator when simulating."""
        if self.slice_step < 1:
            raise DmspsError(f"--slice-step must be at least 1, got {self.slice_step}")
        if self.style not in SCRIBBLE_STYLES:
            raise DmspsError(
                f"unknown scribble style '{self.style}' (choose from {', '.join(SCRIBBLE_STYLES)})"
            )
        if self.style == "dmsps":
            return load_simulator(self.density) if self.simulate else None
        from dmsps.data.authors_scribbles import authors_scribble, check_style_options

        check_style_options(self.density, self.erosion, "--scribble-density")
        return authors_scribble if self.simulate else None


def load_nifti_case(
    case: str,
    image_paths: Sequence[Path],
    label_path: Path | None,
    scribble_path: Path | None,
    meta: DatasetMeta,
    scribbles: ScribbleOptions,
    simulate: bool,
    label_map: Mapping[int, int] | None = None,
    crop: Callable[[np.ndarray, np.ndarray | None], tuple[slice, ...]] | None = None,
    known: SourceValues | None = None,
) -> CaseData:
    """Load channels, label and scribble of one case on the first channel's grid.

    ``label_map`` maps source label values to ours (unlisted values become background),
    in labels and in scribbles alike; ``known`` lists the values the source format
    defines, so that a stray value (a corrupt or foreign file) is refused before the
    mapping would hide it as background. ``crop(image, label)`` returns a (Z, Y, X) box to
    keep, and the geometry moves with it. A scribble is simulated from the (mapped) label
    when ``simulate`` and the case has no scribble file, in ``scribbles.style``. With
    ``scribbles.unannotated`` None a scribble file's unannotated value is read off the
    file (``known.unannotated_in``).
    """
    image, geom = load_channels(image_paths)
    label = None
    if label_path is not None:
        arr, g = load_volume(label_path, np.float32)
        if problem := g.mismatch(geom, "label", "the image's"):
            raise DataError(label_path, problem)
        if label_map is not None:
            raw = check_label(arr, 1 << 30, label_path)
            if known is not None:
                known.check(raw, label_path, "label")
            arr = remap(raw, label_map)
        label = check_label(arr, meta.num_classes, label_path)
    scribble = None
    source = scribble_path
    if scribble_path is not None:
        arr, g = load_volume(scribble_path, np.float32)
        if problem := g.mismatch(geom, "scribble", "the image's"):
            raise DataError(scribble_path, problem)
        unannotated = scribbles.unannotated
        if label_map is not None:  # source classes -> ours; unannotated stays as it is
            raw = check_label(arr, 1 << 30, scribble_path, kind="scribble")
            if unannotated is None and known is not None:
                unannotated = known.unannotated_in(raw, scribble_path)
            if known is not None:
                known.check(raw, scribble_path, "scribble", unannotated)
            keep = {} if unannotated is None else {unannotated: unannotated}
            arr = remap(raw, {**label_map, **keep}, default=0)
        if unannotated is None:
            raise ValueError("detecting the unannotated value needs label_map and known")
        scribble = convert_scribble(
            arr, meta.num_classes, unannotated, scribble_path, scribbles.value_map
        )
    elif simulate and label is not None:
        scribble = simulate_case(case, label, meta.num_classes, scribbles)
        source = label_path
    if scribble is not None and scribbles.slice_step > 1:
        from dmsps.data.simulation import keep_every_nth_slice

        scribble = keep_every_nth_slice(scribble, scribbles.slice_step, meta.ignore_value)
    if crop is not None:
        box = crop(image, label)
        image = image[(slice(None), *box)]
        label = None if label is None else label[box]
        scribble = None if scribble is None else scribble[box]
        geom = geom.crop(box)
    return CaseData(np.ascontiguousarray(image), geom, label, scribble, source)


def simulate_case(
    case: str, label: np.ndarray, num_classes: int, scribbles: ScribbleOptions
) -> np.ndarray:
    """A case's simulated scribble in the chosen style, seeded by case name, with the
    unannotated value C; the authors' style draws only on the slices --slice-step keeps."""
    rng = case_seed(scribbles.seed, case)
    if scribbles.style == "authors":
        from dmsps.data.authors_scribbles import authors_scribble

        step = scribbles.slice_step if label.ndim == 3 else 1
        return authors_scribble(label, num_classes, rng, scribbles.erosion, slice_step=step)
    sim = load_simulator(scribbles.density)
    return sim(
        label,
        num_classes,
        density=scribbles.density,
        rng=rng,
        background_regions=scribbles.background_regions,
    )


def find_scribble_files(folder: Path, cases: set[str], warnings: list[str]) -> dict[str, Path]:
    """Case -> scribble file (``<case>`` or ``<case>_scribble``) of the train/val cases."""
    if not folder.is_dir():
        raise DmspsError(f"{folder}: scribble folder not found")
    found: dict[str, Path] = {}
    for stem, path in index_by_stem([folder], recursive=False).items():
        case = stem.removesuffix("_scribble")
        if case not in cases:
            warnings.append(f"{path}: warning: scribble matches no train/val case; ignored")
        elif case in found:
            raise DataError(path, f"ambiguous: {found[case]} is also the scribble of '{case}'")
        else:
            found[case] = path
    return found


@dataclass(frozen=True)
class SourceValues:
    """The label values a source format defines (e.g. WORD's 0..16), and their name for
    messages; a mapping to our classes would otherwise turn any other value silently into
    background."""

    values: frozenset[int]
    name: str

    def check(self, arr: np.ndarray, path: Path, kind: str, unannotated: int | None = None) -> None:
        allowed = self.values | ({unannotated} if unannotated is not None else set())
        bad = [int(v) for v in np.unique(arr) if int(v) not in allowed]
        if not bad:
            return
        shown = listing(bad, 10)
        if unannotated is None:
            tail = f"not {self.name}; fix the file, or check that it belongs to this dataset"
        else:
            tail = (
                f"neither {self.name} nor the unannotated value {unannotated}; give the "
                "value its unannotated voxels hold with --scribble-unannotated, or fix the file"
            )
        raise DataError(path, f"{kind} values {shown} are {tail}")

    def unannotated_in(self, arr: np.ndarray, path: Path) -> int:
        """The value marking unannotated voxels of a scribble file in this format: the one
        value it holds that is not one of the format's, which must also be its most
        frequent (scribbles are sparse); anything else is refused as ambiguous."""
        values, counts = np.unique(arr, return_counts=True)
        foreign = [int(v) for v in values if int(v) not in self.values]
        common = int(values[counts.argmax()])
        if len(foreign) == 1 and foreign[0] == common:
            return common
        give = "give the value its unannotated voxels hold with --scribble-unannotated V"
        if not foreign:
            problem = (
                f"scribble holds values {listing(values.tolist(), 10)} only, all of them "
                f"{self.name}, so none can be told to mark unannotated voxels; {give}"
            )
        elif len(foreign) > 1:
            problem = (
                f"scribble values {listing(foreign, 10)} are not {self.name}, and only one "
                f"value can mark unannotated voxels; {give}, or fix the file"
            )
        else:
            problem = (
                f"scribble value {foreign[0]} is not one of {self.name}, but not the file's "
                f"most frequent value either ({common} is), so it is not taken to mark "
                f"unannotated voxels; {give}, or fix the file"
            )
        raise DataError(path, problem)


def print_warnings(result: ImportResult) -> None:
    for line in result.warnings:
        print(line, file=sys.stderr)


# === command-line options shared by importers ==========================================
def add_out_arguments(p: argparse.ArgumentParser, default_name: str | None) -> None:
    p.add_argument("out", metavar="OUT", type=Path, help="new dataset folder")
    p.add_argument(
        "--force",
        "--overwrite",
        dest="overwrite",
        action="store_true",
        help="replace the dataset in a non-empty OUT (removes its dataset folders and files)",
    )
    p.add_argument(
        "--name",
        default=default_name,
        help=f"dataset name for dataset.json (default {default_name or 'the OUT folder name'})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def out_options(args: argparse.Namespace) -> dict:
    """What add_out_arguments parsed, as the import functions' keyword arguments."""
    return {"overwrite": args.overwrite, "name": args.name, "progress": not args.quiet}


def add_scribble_arguments(
    p: argparse.ArgumentParser,
    value_map: bool = True,
    simulate_flag: bool = True,
    style: str | None = None,
) -> None:
    """Scribble options; ``simulate_flag=False`` for sources whose train/val cases always
    get simulated scribbles when they have no file; ``style`` offers --scribble-style
    with that default (and --authors-erosion)."""
    if value_map:
        p.add_argument(
            "--scribble-map",
            metavar="OLD:NEW,...",
            help="relabel scribble values before conversion, e.g. 1:0,2:1",
        )
    if simulate_flag:
        p.add_argument(
            "--simulate-scribbles",
            action="store_true",
            help="draw scribbles from the labels of train/val cases that have no scribble file",
        )
    p.add_argument(
        "--scribble-density",
        type=float,
        metavar="D",
        default=1.0,
        help="stroke length factor for simulated scribbles, in (0, 1] (default 1)",
    )
    p.add_argument(
        "--slice-step",
        type=int,
        metavar="N",
        default=1,
        help="keep scribbles on every N-th slice only (slice axis = first array axis; "
        "default 1: every slice)",
    )
    p.add_argument(
        "--background-strokes",
        type=int,
        metavar="N",
        default=1,
        help="simulated scribbles: background strokes per slice into the N largest "
        "background pieces (default 1; more for many organs, where background falls apart)",
    )
    if style is None:
        return
    p.add_argument(
        "--scribble-style",
        choices=SCRIBBLE_STYLES,
        default=style,
        help="how simulated scribbles are drawn: dmsps, our simulator; authors, the DMSPS "
        "authors' generator behind the paper's WORD and BraTS scribbles (per slice: "
        "skeleton of the eroded class, one random path through it, 3 pixels wide, "
        f"slightly shifted and turned; background: its whole skeleton) (default {style})",
    )
    p.add_argument(
        "--authors-erosion",
        type=erosion_range,
        default=(1, 7),
        metavar="MIN,MAX",
        help="--scribble-style authors: a class covering more than 900 pixels of a slice "
        "is eroded ceil(MIN + u * (MAX - MIN)) times, u uniform in [0, 1), before its "
        "skeleton is taken (default 1,7: 2 to 7 times)",
    )


def erosion_range(text: str) -> tuple[int, int]:
    """argparse type of --authors-erosion: MIN,MAX whole numbers, 0 <= MIN <= MAX."""
    parts = text.split(",")
    try:
        a, b = (int(v) for v in parts)
    except ValueError:
        a, b = 0, -1
    if len(parts) != 2 or not 0 <= a <= b:
        raise argparse.ArgumentTypeError(
            f"expected MIN,MAX with whole numbers 0 <= MIN <= MAX, got '{text}'"
        )
    return a, b


def scribble_options(args: argparse.Namespace) -> dict:
    """What add_scribble_arguments parsed, as the import functions' keyword arguments
    (``scribble_map`` and ``simulate_scribbles`` only where the importer offers them)."""
    opts = {
        "scribble_density": args.scribble_density,
        "slice_step": args.slice_step,
        "background_strokes": args.background_strokes,
    }
    if hasattr(args, "scribble_map"):
        opts["scribble_map"] = parse_value_map(args.scribble_map)
    if hasattr(args, "simulate_scribbles"):
        opts["simulate_scribbles"] = args.simulate_scribbles
    if hasattr(args, "scribble_style"):
        opts["scribble_style"] = args.scribble_style
        opts["authors_erosion"] = args.authors_erosion
    return opts


def add_split_arguments(p: argparse.ArgumentParser, val: float, test: float) -> None:
    p.add_argument("--splits", type=Path, metavar="FILE", help="JSON file with the splits")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=val,
        metavar="F",
        help=f"share of validation (default {val})",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=test,
        metavar="F",
        help=f"share of test (default {test})",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the random split (default 0)"
    )


def split_options(args: argparse.Namespace) -> dict:
    """What add_split_arguments parsed, as the import functions' keyword arguments."""
    return {
        "splits_file": args.splits,
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "seed": args.seed,
    }

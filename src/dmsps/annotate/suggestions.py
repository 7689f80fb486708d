"""Where to scribble next: slices (or cases) ranked by how unsure the model is there.

The rule (docs/annotate.md): for every voxel, with the two decoders' softmax outputs
``p_main`` and ``p_aux`` and their mean ``p = (p_main + p_aux) / 2``,

    u = -sum_c p_c log p_c / log K        normalised entropy of the mean, in [0, 1]
    d = [argmax p_main != argmax p_aux]   the decoders disagree, 0 or 1
    s = (u + d) / 2

The score of a slice (a (Y, X) plane of the array, index z) is the mean of ``s`` over its
voxels; the score of a case is the mean over all its voxels. Only slices without any
scribbled voxel (cases without any, for ``unit="case"``) are candidates. The ranking is
by score, highest first; equal scores (to 1e-9) go by case name, then slice index, so the
same model and data always give the same order.

``u`` is the signal DMSPS already uses to expand scribbles (confident voxels become seeds
for stage 2), ``d`` the disagreement its two decoders are trained to resolve; a slice
where both are high is one the model cannot settle from the scribbles it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmsps.errors import DmspsError

UNITS = ("slice", "case")

#: Scores are compared at this precision, so tiny floating-point differences between
#: machines or thread counts do not reorder cases that score the same.
_DECIMALS = 9


@dataclass
class CaseMaps:
    """What the model says about one case, on the image's (Z, Y, X) grid, compactly:
    the main decoder's labels, the uncertainty quantised to 0..255, the disagreement,
    and the per-slice means the ranking needs (kept exact, as float64)."""

    labels: np.ndarray  # uint8 (Z, Y, X)
    uncertainty: np.ndarray  # uint8 (Z, Y, X): round(255 u)
    disagreement: np.ndarray  # bool (Z, Y, X)
    slice_entropy: np.ndarray  # float64 (Z,): mean u per slice
    slice_disagreement: np.ndarray  # float64 (Z,): mean d per slice

    @property
    def nbytes(self) -> int:
        arrays = (self.labels, self.uncertainty, self.disagreement)
        return sum(a.nbytes for a in arrays) + 16 * self.slice_entropy.size

    @property
    def scores(self) -> CaseScores:
        return CaseScores(self.slice_entropy, self.slice_disagreement)


@dataclass(frozen=True)
class CaseScores:
    """Per-slice means of ``u`` and ``d`` for one case; every slice has the same number
    of voxels, so means over slices are means over voxels."""

    entropy: np.ndarray  # (Z,)
    disagreement: np.ndarray  # (Z,)

    @property
    def slice_scores(self) -> np.ndarray:
        return 0.5 * (self.entropy + self.disagreement)


@dataclass(frozen=True)
class Suggestion:
    case: str
    slice: int | None  # None for unit="case"
    score: float
    entropy: float
    disagreement: float

    def to_json(self) -> dict:
        return {
            "case": self.case,
            "slice": self.slice,
            "score": round(self.score, 6),
            "entropy": round(self.entropy, 6),
            "disagreement": round(self.disagreement, 6),
        }


def maps_from_probabilities(main, mean) -> CaseMaps:
    """``CaseMaps`` from the main decoder's and the mean (K, Z, Y, X) probabilities
    (torch tensors, as ``Predictor.probabilities`` returns them). The auxiliary decoder's
    probabilities are ``2 mean - main``; they are formed a few slices at a time, so no
    second K-sized volume is made."""
    import torch

    from dmsps.inference.uncertainty import normalised_entropy

    k, z = int(main.shape[0]), int(main.shape[1])
    spatial = tuple(int(s) for s in main.shape[1:])
    labels = np.empty(spatial, np.uint8 if k <= 256 else np.int16)
    unc = np.empty(spatial, np.uint8)
    dis = np.empty(spatial, bool)
    ent_z = np.empty(z, np.float64)
    dis_z = np.empty(z, np.float64)
    per_slice = max(1, int(np.prod(spatial[1:])))
    step = max(1, (1 << 22) // per_slice)  # ~4 M voxels per chunk
    with torch.no_grad():
        for start in range(0, z, step):
            sl = slice(start, min(z, start + step))
            p_main, p_mean = main[:, sl].float(), mean[:, sl].float()
            lab_main = p_main.max(0).indices
            lab_aux = (2.0 * p_mean - p_main).max(0).indices
            u = normalised_entropy(p_mean)
            d = lab_main != lab_aux
            labels[sl] = lab_main.numpy()
            unc[sl] = torch.round(u * 255.0).clamp(0, 255).to(torch.uint8).numpy()
            dis[sl] = d.numpy()
            ent_z[sl] = u.double().mean(dim=(1, 2)).numpy()
            dis_z[sl] = d.double().mean(dim=(1, 2)).numpy()
    return CaseMaps(labels, unc, dis, ent_z, dis_z)


def case_maps(predictor, image: np.ndarray, spacing) -> CaseMaps:
    """Run ``predictor`` (a ``dmsps.inference.predictor.Predictor``) on a raw
    (C, Z, Y, X) image and keep what the page and the ranking need."""
    probs = predictor.probabilities(image, ("main", "mean"), tuple(spacing))
    maps = maps_from_probabilities(probs["main"], probs["mean"])
    del probs
    return maps


def scribbled_slices(scribble: np.ndarray | None, ignore: int, depth: int) -> np.ndarray:
    """(Z,) bool: which slices hold at least one scribbled voxel (none without a file)."""
    if scribble is None:
        return np.zeros(depth, bool)
    return (scribble != ignore).reshape(scribble.shape[0], -1).any(axis=1)


def rank(
    scores: Mapping[str, CaseScores],
    scribbled: Mapping[str, np.ndarray],
    unit: str = "slice",
    top: int | None = None,
) -> list[Suggestion]:
    """The candidates of ``scores`` ranked by the rule in the module docstring.

    ``scribbled[case]`` is that case's (Z,) "holds a scribble" flags (missing: none).
    """
    if unit not in UNITS:
        raise DmspsError(f"unknown unit '{unit}' (choose from {', '.join(UNITS)})")
    if top is not None and top < 1:
        raise DmspsError(f"--top must be at least 1, got {top}")
    out: list[Suggestion] = []
    for case, sc in scores.items():
        done = np.asarray(scribbled.get(case, np.zeros(sc.entropy.size, bool)), bool)
        if done.shape != sc.entropy.shape:
            raise ValueError(f"{case}: {done.shape[0]} slice flags for {sc.entropy.size} slices")
        if unit == "case":
            if done.any() or not sc.entropy.size:
                continue
            ent, dis = float(sc.entropy.mean()), float(sc.disagreement.mean())
            out.append(Suggestion(case, None, 0.5 * (ent + dis), ent, dis))
            continue
        for z in np.flatnonzero(~done):
            ent, dis = float(sc.entropy[z]), float(sc.disagreement[z])
            out.append(Suggestion(case, int(z), 0.5 * (ent + dis), ent, dis))
    out.sort(key=lambda s: (-round(s.score, _DECIMALS), s.case, -1 if s.slice is None else s.slice))
    return out if top is None else out[:top]


def spread(
    ranking: Sequence[Suggestion], scores: Mapping[str, CaseScores], top: int, bands: int = 5
) -> list[Suggestion]:
    """A slice ranking reordered for variety: the stacks are cut into ``bands`` bands of
    relative position z / (depth - 1), the depth read off the case's ``scores``, and the
    bands take turns, each giving its most uncertain slice of a case not yet picked (once
    no band can, every case may give another). Ranked one by one, the most uncertain
    slices crowd one end of the stacks (ACDC's basal slices, docs/results.md section 10);
    this keeps the uncertainty order within each band and case but spreads the picks.
    Deterministic like ``rank``."""
    if top < 1 or bands < 1:
        raise DmspsError(f"top and bands must be at least 1, got {top} and {bands}")
    queues: list[list[Suggestion]] = [[] for _ in range(bands)]
    for s in ranking:
        if s.slice is None:
            raise DmspsError("spread orders slices, not cases (unit='slice')")
        rel = s.slice / max(scores[s.case].entropy.size - 1, 1)
        queues[min(int(rel * bands), bands - 1)].append(s)
    out: list[Suggestion] = []
    taken: set[str] = set()
    while len(out) < top and any(queues):
        picked = False
        for queue in queues:
            hit = next((i for i, s in enumerate(queue) if s.case not in taken), None)
            if hit is None:
                continue
            choice = queue.pop(hit)
            out.append(choice)
            taken.add(choice.case)
            picked = True
            if len(out) == top:
                break
        if not picked:
            taken.clear()
    return out


def score_cases(
    predictor,
    dataset,
    cases: Iterable[str],
    progress: bool = False,
    on_case: Callable[[int, int], None] | None = None,
) -> dict[str, CaseScores]:
    """Per-slice scores of ``cases`` of a ``Dataset``, one case in memory at a time."""
    from dmsps.progress import progress_bar

    cases = list(cases)
    out = {}
    for i, case in enumerate(progress_bar(cases, desc="scoring slices", disable=not progress)):
        image, geom = dataset.load_image(case)
        out[case] = case_maps(predictor, image, geom.spacing).scores
        del image
        if on_case is not None:
            on_case(i + 1, len(cases))
    return out


def scribble_flags(dataset, cases: Iterable[str]) -> dict[str, np.ndarray]:
    """``scribbled_slices`` of every case's scribble file in ``dataset``."""
    ignore = dataset.meta.ignore_value
    out = {}
    for case in cases:
        scribble = dataset.load_scribble(case)
        if scribble is None:
            from dmsps.io.nifti import read_geometry

            depth = read_geometry(dataset.paths(case).images[0]).shape[0]
        else:
            depth = scribble.shape[0]
        out[case] = scribbled_slices(scribble, ignore, depth)
    return out


# --- which checkpoint a --model argument means ------------------------------------------
def resolve_checkpoint(model: str | Path) -> Path:
    """The checkpoint (``.pt``) behind ``--model``: a checkpoint file; a run folder of
    `dmsps run` (its stage-2 checkpoint, ``best`` or ``last`` as the run chose, else
    stage 1's); a training folder of `dmsps train` (``checkpoints/best.pt``); or the name of
    a model that ships with dmsps. Exported ``.onnx`` models are refused: they hold the
    main decoder only, and the uncertainty needs both."""
    path = Path(model)
    if path.suffix == ".onnx":
        raise DmspsError(
            f"{path}: an exported model holds the main decoder only; the uncertainty and "
            "the suggestions need both decoders: use the .pt checkpoint"
        )
    if path.is_file():
        return path
    if path.is_dir():
        which = "best"
        config = path / "config.json"
        if config.is_file():
            import json

            try:
                which = str(json.loads(config.read_text()).get("checkpoint", "best"))
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                which = "best"
        candidates = [
            path / "stage2" / "checkpoints" / f"{which}.pt",
            path / "stage1" / "checkpoints" / f"{which}.pt",
            path / "checkpoints" / "best.pt",
            path / "checkpoints" / "last.pt",
        ]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise DmspsError(
            f"{path}: no checkpoint in this folder (looked for stage2/checkpoints/{which}.pt, "
            "stage1/checkpoints/..., checkpoints/best.pt); pass a .pt file or a finished run "
            "folder"
        )
    if isinstance(model, str) and not path.suffix and "/" not in model:
        from dmsps.zoo import resolve

        return resolve(model)
    raise DmspsError(f"{path}: no such checkpoint file or run folder")


def load_predictor(model: str | Path, dataset, device: str = "auto"):
    """A ``Predictor`` for ``model`` that fits ``dataset``'s channels and classes."""
    from dmsps.inference.predictor import Predictor

    ckpt = resolve_checkpoint(model)
    predictor = Predictor(ckpt, device)
    meta = dataset.meta
    if predictor.in_channels != dataset.num_channels:
        raise DmspsError(
            f"{ckpt}: the model takes {predictor.in_channels} channel(s), the dataset has "
            f"{dataset.num_channels} ({', '.join(meta.channel_names)}); use a model trained "
            "on this dataset"
        )
    if predictor.num_classes != meta.num_classes:
        raise DmspsError(
            f"{ckpt}: the model segments {predictor.num_classes} classes, dataset.json has "
            f"{meta.num_classes} ({', '.join(meta.class_names)}); use a model trained on this "
            "dataset"
        )
    return predictor

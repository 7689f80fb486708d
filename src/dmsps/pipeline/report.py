"""A self-contained visual report (HTML + PNG) of a pipeline run.

What people look at to judge a run: the training curves of both stages (losses, learning
rate, validation Dice; inline SVG, no plotting library), the metrics, the evaluated cases
worst first (image, reference, both stages' predictions, uncertainty), and training cases
with their scribbles and the expanded seeds stage 2 learnt from. 2D and 3D runs alike: a
volume is shown at the slice where its reference (or annotation) is largest.

Each image carries ``data-role`` and, once the page has loaded, a small script writes how
many images loaded into ``<body data-images-loaded="N/M">`` (checked by the tests in a
headless browser).
"""

from __future__ import annotations

import csv
import html
import math
from pathlib import Path

import numpy as np
from PIL import Image

from dmsps.data.layout import Dataset
from dmsps.io.atomic import atomic_path, write_text
from dmsps.io.nifti import load_volume

# background transparent; RV, Myo, LV and further classes in distinct colours
PALETTE = np.array(
    [
        [0, 0, 0],
        [230, 60, 60],
        [60, 200, 90],
        [70, 120, 240],
        [240, 200, 40],
        [200, 80, 220],
        [40, 210, 210],
        [250, 140, 40],
        [150, 150, 150],
    ],
    np.float32,
)


def _gray(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [1, 99])
    g = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    return np.repeat(g[..., None], 3, axis=-1)


def _overlay(gray: np.ndarray, label: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    colours = PALETTE[np.clip(label, 0, len(PALETTE) - 1)]
    mask = (label > 0)[..., None]
    return np.where(mask, (1 - alpha) * gray + alpha * colours, gray)


def _heat(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0, 1)[..., None]
    return np.concatenate([255 * u, 255 * (1 - np.abs(2 * u - 1)) * 0.6, 255 * (1 - u)], -1)


def case_figure(panels: list[np.ndarray], path: Path, scale: int = 2) -> None:
    h = max(p.shape[0] for p in panels)
    gap = np.full((h, 4, 3), 255, np.float32)
    row = []
    for p in panels:
        pad = np.zeros((h, p.shape[1], 3), np.float32)
        pad[: p.shape[0]] = p
        row += [pad, gap]
    img = Image.fromarray(np.concatenate(row[:-1], axis=1).astype(np.uint8))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")


def _cell(stats: dict | None) -> str:
    if not stats or stats.get("mean") is None:
        return "<td>n/a</td>"
    return f"<td>{stats['mean']:.3f} ± {stats['std']:.3f}</td>"


def _table(summary: dict) -> str:
    """HTML version of an evaluation summary (see dmsps.eval.metrics.summarise)."""
    metrics = ("dice", "hd95", "asd")
    rows = []
    for c in summary.get("classes", []):
        cells = "".join(_cell(c.get(k)) for k in metrics)
        rows.append(f"<tr><th>{html.escape(str(c['name']))}</th>{cells}</tr>")
    mean = summary.get("foreground_mean")
    if mean:
        rows.append(f"<tr><th>mean (fg)</th>{''.join(_cell(mean.get(k)) for k in metrics)}</tr>")
    head = "<tr><th>class</th><th>Dice</th><th>HD95 (mm)</th><th>ASD (mm)</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


# --- training curves (inline SVG) ----------------------------------------------------------
_SERIES_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def read_log(path: Path) -> dict[str, list[tuple[float, float]]]:
    """log.csv as series name -> [(iteration, value)], blanks and non-numbers skipped."""
    series: dict[str, list[tuple[float, float]]] = {}
    if not path.is_file():
        return series
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                it = float(row["iteration"])
            except (KeyError, TypeError, ValueError):
                continue
            for key, value in row.items():
                if key in ("iteration", "elapsed_s") or value in (None, ""):
                    continue
                try:
                    v = float(value)
                except ValueError:
                    continue
                if math.isfinite(v):
                    series.setdefault(key, []).append((it, v))
    return series


def svg_plot(title: str, series: dict[str, list[tuple[float, float]]], log_y: bool = False) -> str:
    """A small line chart: one polyline per series, axes with end labels, a legend."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return f"<p>{html.escape(title)}: no data</p>"
    w, h, left, bottom, top, right = 460, 220, 52, 28, 24, 10
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    if log_y:
        ys = [math.log10(max(y, 1e-12)) for y in ys]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    def py(y: float) -> float:
        if log_y:
            y = math.log10(max(y, 1e-12))
        return h - bottom - (y - y0) / (y1 - y0) * (h - bottom - top)

    parts = [
        f"<svg class='curve' width='{w}' height='{h}' viewBox='0 0 {w} {h}' "
        f"xmlns='http://www.w3.org/2000/svg' role='img' aria-label='{html.escape(title)}'>",
        f"<text x='{left}' y='14' font-size='13'>{html.escape(title)}</text>",
        f"<rect x='{left}' y='{top}' width='{w - left - right}' height='{h - top - bottom}' "
        "fill='none' stroke='#999'/>",
    ]
    fmt = (lambda v: f"1e{v:.1f}") if log_y else (lambda v: f"{v:.3g}")
    parts += [
        f"<text x='{left - 4}' y='{top + 10}' font-size='10' text-anchor='end'>{fmt(y1)}</text>",
        f"<text x='{left - 4}' y='{h - bottom}' font-size='10' text-anchor='end'>{fmt(y0)}</text>",
        f"<text x='{left}' y='{h - 10}' font-size='10'>{x0:.0f}</text>",
        f"<text x='{w - right}' y='{h - 10}' font-size='10' text-anchor='end'>"
        f"{x1:.0f} iterations</text>",
    ]
    for i, (name, pts) in enumerate(series.items()):
        colour = _SERIES_COLOURS[i % len(_SERIES_COLOURS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(
            f"<polyline points='{coords}' fill='none' stroke='{colour}' stroke-width='1.5'/>"
        )
        parts.append(
            f"<text x='{left + 8 + 90 * i}' y='{top + 14}' font-size='11' fill='{colour}'>"
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def curves_html(log: Path) -> str:
    """Loss terms, learning rate (log scale) and validation Dice of one stage."""
    series = read_log(log)
    losses = {k: series[k] for k in ("loss", "sup", "pl", "ce", "dice") if k in series}
    return (
        "<div class='curves'>"
        + "".join(
            [
                svg_plot("training loss terms", losses),
                svg_plot("learning rate", {"lr": series.get("lr", [])}, log_y=True),
                svg_plot("validation mean Dice", {"val_dice": series.get("val_dice", [])}),
            ]
        )
        + "</div>"
    )


def case_scores(metrics_csv: Path) -> dict[str, float]:
    """Mean Dice over the foreground classes of each case (metrics.csv of a stage)."""
    per_case: dict[str, list[float]] = {}
    if not metrics_csv.is_file():
        return {}
    with metrics_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                per_case.setdefault(row["case"], []).append(float(row["dice"]))
            except (KeyError, ValueError):
                continue
    return {c: float(np.mean(v)) for c, v in per_case.items() if v}


def _largest_slice(*maps: np.ndarray | None, ignore: int | None = None) -> int:
    for m in maps:
        if m is None:
            continue
        shown = (m > 0) if ignore is None else (m != ignore)
        if shown.any():
            return int(np.argmax(shown.reshape(shown.shape[0], -1).sum(1)))
    first = next(m for m in maps if m is not None)
    return first.shape[0] // 2


def _scribble_rgb(gray: np.ndarray, scribble: np.ndarray, ignore: int) -> np.ndarray:
    """Scribbled pixels in their class colour (background strokes white), opaque."""
    out = gray.copy()
    annotated = scribble != ignore
    colours = PALETTE[np.clip(scribble, 0, len(PALETTE) - 1)]
    colours[scribble == 0] = 255
    out[annotated] = colours[annotated]
    return out


def write_report(
    run: Path,
    ds: Dataset,
    cases: list[str],
    metrics: dict,
    train: dict,
    expand: dict,
    split: str,
    max_cases: int = 6,
) -> Path:
    out = run / "report"
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><meta charset='utf-8'><title>dmsps report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px}"
        "img{max-width:100%}.curves{display:flex;flex-wrap:wrap;gap:8px}</style>",
        f"<body data-images-loaded='pending'><h1>dmsps run: {html.escape(str(run.name))}</h1>",
        f"<p>Dataset <code>{html.escape(str(ds.root))}</code>; evaluated on the "
        f"<b>{split}</b> split ({len(cases)} cases).</p>",
    ]
    for stage in ("stage1", "stage2"):
        tr = train.get(stage, {})
        parts.append(
            f"<h2>{stage}</h2><p>{tr.get('iterations', '?')} iterations, best validation Dice "
            f"{tr.get('best_val_dice', float('nan')):.4f} at iteration "
            f"{tr.get('best_iteration', '?')}, "
            f"{tr.get('train_seconds', 0) / 60:.1f} min training.</p>"
        )
        parts.append(curves_html(run / stage / "log.csv"))
        parts.append(_table(metrics.get(stage, {})))
    parts.append(
        "<h2>Scribble expansion</h2><table><tr><th>class</th><th>scribble px</th>"
        "<th>added px</th><th>accuracy of added</th><th>coverage of the class</th></tr>"
    )
    for name, d in expand.get("classes", {}).items():
        fractions = (d.get(k) for k in ("added_accuracy", "coverage"))
        cells = "".join(f"<td>{'n/a' if x is None else f'{x:.3f}'}</td>" for x in fractions)
        parts.append(
            f"<tr><th>{html.escape(name)}</th><td>{d['scribble_pixels']}</td>"
            f"<td>{d['added_pixels']}</td>{cells}</tr>"
        )
    parts.append("</table>")
    parts += _evaluated_cases(run, ds, cases, out, max_cases)
    parts += _training_cases(run, ds, out, max_cases)
    parts.append(_LOAD_CHECK)
    index = out / "index.html"
    write_text(index, "\n".join(parts))
    return index


#: After load, count the images that arrived (the tests read this in a headless browser).
_LOAD_CHECK = (
    "<script>window.addEventListener('load',function(){var i=document.images,n=0;"
    "for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)n++;}"
    "document.body.dataset.imagesLoaded=n+'/'+i.length;});</script></body>"
)


def _evaluated_cases(run: Path, ds: Dataset, cases: list[str], out: Path, limit: int) -> list[str]:
    """Evaluated cases, worst stage-2 mean Dice first."""
    scores = case_scores(run / "metrics" / "stage2" / "metrics.csv")
    ordered = sorted(cases, key=lambda c: scores.get(c, math.inf))
    parts = [
        "<h2>Evaluated cases, worst first</h2><p>image | reference | stage 1 | stage 2 | "
        "stage-2 uncertainty (blue certain, red uncertain)</p>"
    ]
    for case in ordered[:limit]:
        image, _ = ds.load_image(case)
        label = ds.load_label(case)
        preds = [
            load_volume(run / "predictions" / s / f"{case}.nii.gz", np.int16)[0]
            for s in ("stage1", "stage2")
        ]
        unc_path = run / "predictions" / "stage2" / "uncertainty" / f"{case}.nii.gz"
        unc = (
            load_volume(unc_path)[0] if unc_path.is_file() else np.zeros_like(preds[1], np.float32)
        )
        ref = label if label is not None else np.zeros_like(preds[0])
        z = _largest_slice(label, preds[1])
        gray = _gray(image[0, z])
        panels = [
            gray,
            _overlay(gray, ref[z]),
            _overlay(gray, preds[0][z]),
            _overlay(gray, preds[1][z]),
            _heat(unc[z]),
        ]
        png = out / f"{case}.png"
        case_figure(panels, png)
        score = f", stage-2 mean Dice {scores[case]:.3f}" if case in scores else ""
        parts.append(
            f"<h3>{html.escape(case)} (slice {z}{score})</h3>"
            f"<img src='{png.name}' data-role='evaluated' alt='{html.escape(case)}'>"
        )
    return parts


def _training_cases(run: Path, ds: Dataset, out: Path, limit: int) -> list[str]:
    """Training cases: the scribbles stage 1 saw and the seeds stage 2 learnt from."""
    seeds_dir = run / "expand" / "seeds"
    scribble_dir = run / "scribbles" if (run / "scribbles").is_dir() else None
    cases = [c for c in ds.split("train") if (seeds_dir / f"{c}{ds.meta.file_ending}").is_file()]
    if not cases:
        return []
    ignore = ds.meta.ignore_value
    parts = [
        "<h2>Training cases: scribbles and expanded seeds</h2><p>image | scribbles (background "
        "strokes white) | expanded seeds | reference (where known)</p>"
    ]
    for case in cases[: max(1, limit // 2)]:
        image, _ = ds.load_image(case)
        scribble = ds.load_scribble(case, scribble_dir)
        seeds = ds.load_scribble(case, seeds_dir)
        label = ds.load_label(case)
        if scribble is None or seeds is None:
            continue
        z = _largest_slice(scribble, ignore=ignore)
        gray = _gray(image[0, z])
        seed_map = np.where(seeds[z] == ignore, 0, seeds[z])
        panels = [
            gray,
            _scribble_rgb(gray, scribble[z], ignore),
            _overlay(gray, seed_map),
            _overlay(gray, label[z]) if label is not None else gray,
        ]
        png = out / f"train_{case}.png"
        case_figure(panels, png)
        parts.append(
            f"<h3>{html.escape(case)} (slice {z})</h3>"
            f"<img src='{png.name}' data-role='training' alt='{html.escape(case)}'>"
        )
    return parts

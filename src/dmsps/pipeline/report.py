"""A self-contained visual report (HTML + PNG) of a pipeline run."""

from __future__ import annotations

import html
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
        "img{max-width:100%}</style>",
        f"<h1>dmsps run: {html.escape(str(run.name))}</h1>",
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
    parts.append(
        "</table><h2>Cases</h2><p>image | reference | stage 1 | stage 2 | "
        "stage-2 uncertainty (blue certain, red uncertain)</p>"
    )
    for case in cases[:max_cases]:
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
        z = int(np.argmax((ref > 0).sum((1, 2)))) if ref.any() else image.shape[1] // 2
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
        parts.append(f"<h3>{html.escape(case)} (slice {z})</h3><img src='{png.name}'>")
    index = out / "index.html"
    write_text(index, "\n".join(parts))
    return index

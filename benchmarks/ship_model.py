"""Make a shipped model from a finished `dmsps run` folder: NAME.pt + NAME.json card.

    python benchmarks/ship_model.py runs/acdc acdc --stage stage2 \
        --data "ACDC, 140 training volumes with real scribbles" --split "DMSPS validation (30)" \
        --command "dmsps run data/acdc --preset acdc --out runs/acdc"

The checkpoint is copied without training-only state (optimizer, RNG), the card records
the stage's validation Dice from the run's metrics and the file's sha256. Writes into
src/dmsps/shipped_models/ (or --out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dmsps.models.checkpoint import load_checkpoint
from dmsps.zoo import sha256


def _public(meta: dict, data: str) -> dict:
    """The checkpoint's metadata without the training machine's folders (they mean
    nothing elsewhere and say where someone keeps their data)."""
    meta = dict(meta, dataset=data)
    cfg = dict(meta.get("train_config", {}))
    for key in ("cache_dir", "scribble_dir", "init_from"):
        if cfg.get(key):
            cfg[key] = Path(cfg[key]).name
    meta["train_config"] = cfg
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished dmsps run folder")
    ap.add_argument("name", help="the model's name (letters, digits, - and _)")
    ap.add_argument("--stage", default="stage2", choices=("stage1", "stage2"))
    ap.add_argument("--checkpoint", default="best", choices=("best", "last"))
    ap.add_argument("--data", required=True, help="what it was trained on")
    ap.add_argument("--split", required=True, help="where the Dice was measured")
    ap.add_argument("--command", required=True, help="the command that trained it")
    ap.add_argument("--out", type=Path, default=Path("src/dmsps/shipped_models"))
    args = ap.parse_args()
    if not args.name.replace("-", "").replace("_", "").isalnum():
        raise SystemExit(f"bad model name {args.name!r}")
    ckpt = load_checkpoint(args.run / args.stage / "checkpoints" / f"{args.checkpoint}.pt")
    summary = json.loads((args.run / "metrics" / args.stage / "summary.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"{args.name}.pt"
    torch.save({"model": ckpt["model"], "meta": _public(ckpt["meta"], args.data)}, target)
    card = {
        "name": args.name,
        "file": target.name,
        "sha256": sha256(target),
        "data": args.data,
        "split": args.split,
        "preset": json.loads((args.run / "config.json").read_text())["preset"],
        "command": args.command,
        "val_dice": summary["foreground_mean"]["dice"]["mean"],
        "classes": ckpt["meta"].get("class_names", []),
        "spatial_dims": ckpt["meta"].get("spatial_dims"),
        "per_class_dice": {c["name"]: c["dice"]["mean"] for c in summary["classes"]},
    }
    (args.out / f"{args.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {target} and its card; sha256 {card['sha256']}")


if __name__ == "__main__":
    main()

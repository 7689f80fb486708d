"""`dmsps models`: the trained models that ship with dmsps."""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "list the trained models that ship with dmsps (usable by name, no download)"
DESCRIPTION = """\
List the shipped models with what they were trained on and how well they did. Use one
by name: `dmsps predict --model NAME IN OUT`, or `dmsps.load_model("NAME")` in Python.
Each model's sha256 is checked when it is used. DMSPS_MODEL_DIR points at another folder
of models (NAME.pt + NAME.json model card).

example:
  dmsps models
  dmsps models --card acdc
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--card", metavar="NAME", help="print one model's whole card")


def run(args: argparse.Namespace) -> int:
    import json

    from dmsps.zoo import list_models, resolve, zoo_dir

    cards = list_models()
    if args.card:
        path = resolve(args.card)  # checks the hash too
        card = next(c for c in cards if c.name == args.card)
        print(json.dumps({**card.__dict__.copy(), "path": str(path)}, indent=2, default=str))
        return 0
    if not cards:
        print(f"no trained models ship with this installation ({zoo_dir()})")
        return 0
    width = max(len(c.name) for c in cards)
    for c in cards:
        size = c.path.stat().st_size / 1e6 if c.path.is_file() else float("nan")
        print(
            f"{c.name:<{width}}  {c.data} ({c.split}), preset {c.preset}: validation Dice "
            f"{c.val_dice:.3f}, {size:.1f} MB"
        )
    return 0

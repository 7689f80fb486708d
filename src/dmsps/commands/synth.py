"""`dmsps synth`: generate a synthetic dataset (cardiac) or a synthetic source dataset in
an official layout (abdominal CT as WORD, brain-tumour MRI as BraTS 2020)."""

from __future__ import annotations

import argparse

from dmsps.errors import DmspsError

NAME = "synth"
HELP = "generate synthetic data: cardiac MRI with scribbles, WORD-like CT, BraTS-like MRI"
DESCRIPTION = """\
Generate synthetic data with no download. The same --seed always gives the same files,
and a case does not depend on --cases.

cardiac   short-axis cine-MRI-like stacks (slices, size, size) in the dmsps layout, ready
          for `dmsps train`: dense labels 0 background, 1 RV, 2 myocardium, 3 LV,
          simulated scribbles for the train and val cases, and a 60/20/20
          train/val/test split in splits.json. Options --size, --slices, --density.

abdomen   abdominal CT in Hounsfield units (int16), in the official WORD layout:
          OUT/imagesTr/word_0001.nii.gz with OUT/labelsTr/word_0001.nii.gz, then
          imagesVal/labelsVal and imagesTs/labelsTs (60/20/20 %). Labels use WORD's
          values: 1 liver, 2 spleen, 3 left kidney, 4 right kidney, 5 stomach,
          6 gallbladder, 7 esophagus, 8 pancreas, 9 duodenum, 10 colon, 11 intestine.
          Default --shape 40 96 96 over 200 x 336 x 336 mm (5 x 3.5 x 3.5 mm voxels).
          Import it with `dmsps import word OUT DATA`.

brain     brain-tumour MRI, skull-stripped (0 outside the brain), in the official
          BraTS 2020 layout: OUT/BraTS20_Training_001/BraTS20_Training_001_t1.nii.gz,
          ..._t1ce, ..._t2, ..._flair and ..._seg (0 background, 1 necrotic core,
          2 edema, 4 enhancing tumour). Default --shape 48 64 64 over
          144 x 192 x 192 mm (3 mm voxels). Import it with
          `dmsps import brats2020 OUT DATA`.

For abdomen and brain, --shape alone keeps the field of view (the anatomy keeps its
size in mm at another resolution); --spacing sets the voxel size in mm, and the field
of view (shape x spacing) must still hold the anatomy.

examples:
  dmsps synth cardiac data/synth --cases 40 --size 96 --seed 0
  dmsps synth abdomen data/word-synth --cases 30 && dmsps import word data/word-synth data/word
  dmsps synth brain data/brats-synth --cases 30 --shape 64 80 80
"""

KINDS = ("cardiac", "abdomen", "brain")
DEFAULT_CASES = {"cardiac": 40, "abdomen": 30, "brain": 30}
_CARDIAC_ONLY = ("size", "slices", "density")
_VOLUME_ONLY = ("shape", "spacing")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="what to generate")
    parser.add_argument("out", metavar="OUT", help="output folder (must be empty or absent)")
    parser.add_argument(
        "--cases",
        type=int,
        default=None,
        help="number of cases (default 40 for cardiac, 30 for abdomen and brain)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--force",
        "--overwrite",
        dest="overwrite",
        action="store_true",
        help="replace an existing dataset in OUT",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    cardiac = parser.add_argument_group("cardiac")
    cardiac.add_argument(
        "--size", type=int, default=None, help="in-plane size in pixels (default 96)"
    )
    cardiac.add_argument("--slices", type=int, default=None, help="slices per case (default 10)")
    cardiac.add_argument(
        "--density",
        type=float,
        default=None,
        help="scribble length as a fraction of the full stroke, in (0, 1] (default 1)",
    )
    abdomen = parser.add_argument_group("abdomen")
    abdomen.add_argument(
        "--phase",
        choices=("unenhanced", "venous"),
        default=None,
        help="CT phase (default unenhanced: organs within ~25 HU of each other; venous: "
        "portal-venous contrast, water-filled stomach, organs further apart)",
    )
    volume = parser.add_argument_group("abdomen and brain")
    volume.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        default=None,
        help="volume size in voxels (default 40 96 96 for abdomen, 48 64 64 for brain)",
    )
    volume.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("SZ", "SY", "SX"),
        default=None,
        help="voxel size in mm (default: the field of view divided by --shape)",
    )


def _reject(args: argparse.Namespace, options: tuple[str, ...], hint: str) -> None:
    given = [f"--{o}" for o in options if getattr(args, o) is not None]
    if given:
        raise DmspsError(f"{', '.join(given)} does not apply to '{args.kind}' ({hint})")


def run(args: argparse.Namespace) -> int:
    cases = DEFAULT_CASES[args.kind] if args.cases is None else args.cases
    if args.kind == "cardiac":
        from dmsps.data.synthetic.cardiac import make_cardiac_dataset

        _reject(args, (*_VOLUME_ONLY, "phase"), "use --size and --slices")
        out = make_cardiac_dataset(
            args.out,
            cases=cases,
            size=96 if args.size is None else args.size,
            slices=10 if args.slices is None else args.slices,
            seed=args.seed,
            density=1.0 if args.density is None else args.density,
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
        print(f"wrote {cases} synthetic cardiac cases to {out}")
        return 0
    _reject(args, _CARDIAC_ONLY, "use --shape Z Y X and --spacing SZ SY SX")
    extra = {}
    if args.kind == "abdomen":
        extra["phase"] = args.phase or "unenhanced"
    elif args.phase is not None:
        raise DmspsError(f"--phase does not apply to '{args.kind}' (abdomen only)")
    if args.kind == "abdomen":
        from dmsps.data.synthetic.abdomen import DEFAULT_SHAPE, make_abdomen_source

        make_source, what, importer = make_abdomen_source, "abdominal CT (WORD layout)", "word"
    else:
        from dmsps.data.synthetic.brain import DEFAULT_SHAPE, make_brain_source

        make_source, what, importer = (
            make_brain_source,
            "brain MRI (BraTS 2020 layout)",
            "brats2020",
        )
    out = make_source(
        args.out,
        cases=cases,
        seed=args.seed,
        shape=DEFAULT_SHAPE if args.shape is None else tuple(args.shape),
        spacing=None if args.spacing is None else tuple(args.spacing),
        progress=not args.quiet,
        overwrite=args.overwrite,
        **extra,
    )
    print(f"wrote {cases} synthetic {what} cases to {out}")
    print(f"import them with: dmsps import {importer} {out} DATA")
    return 0

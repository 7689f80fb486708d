"""Pack the ACDC HDF5 volumes (WSL4MIS/DMSPS release) into one small file for a GPU machine.

The device tool carries at most 64 MiB per call; the HDF5 volumes are ~100 MB of
float32. Images are stored as 8-bit (round(255 x), the volumes are already scaled to
[0, 1]), labels and scribbles losslessly, the whole thing xz-compressed (~50 MB).
``unpack`` writes HDF5 volumes plus train.txt/val.txt again, ready for
``dmsps import acdc-h5``. The 8-bit step is far below the images' noise level; results
from packed data are labelled as such in docs/results.md.

    python benchmarks/acdc_pack.py pack ACDC_H5_DIR .acdc/acdc_u8.npz.xz
    python benchmarks/acdc_pack.py unpack .acdc/acdc_u8.npz.xz /tmp/acdc_h5
"""

from __future__ import annotations

import argparse
import io
import lzma
from pathlib import Path

import h5py
import numpy as np


def pack(src: Path, dst: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name in ("train.txt", "val.txt"):
        lines = (src / name).read_text().split()
        arrays[f"list__{name[:-4]}"] = np.array(lines)
    for path in sorted((src / "volumes").glob("*.h5")):
        with h5py.File(path, "r") as h:
            stem = path.stem
            arrays[f"{stem}__image"] = np.round(np.clip(h["image"][:], 0, 1) * 255).astype(np.uint8)
            arrays[f"{stem}__label"] = h["label"][:].astype(np.uint8)
            arrays[f"{stem}__scribble"] = h["scribble"][:].astype(np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(lzma.compress(buf.getvalue(), preset=6))
    print(f"wrote {dst} ({dst.stat().st_size / 2**20:.1f} MiB)")


def unpack(src: Path, dst: Path) -> None:
    data = np.load(io.BytesIO(lzma.decompress(src.read_bytes())))
    (dst / "volumes").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (dst / f"{split}.txt").write_text("\n".join(data[f"list__{split}"].tolist()) + "\n")
    stems = sorted({k.split("__")[0] for k in data.files if not k.startswith("list__")})
    for stem in stems:
        with h5py.File(dst / "volumes" / f"{stem}.h5", "w") as h:
            h["image"] = data[f"{stem}__image"].astype(np.float32) / 255.0
            h["label"] = data[f"{stem}__label"]
            h["scribble"] = data[f"{stem}__scribble"].astype(np.uint16)
    print(f"unpacked {len(stems)} volumes into {dst}")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("action", choices=("pack", "unpack"))
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    a = p.parse_args()
    (pack if a.action == "pack" else unpack)(a.src, a.dst)


if __name__ == "__main__":
    main()

"""3D memory and speed on the CPU: what the 3D path costs, and that it stays bounded.

Three measurements, each in a fresh child process (peak RSS = the child's ru_maxrss):

``step``
    The 3D training step at the authors' patch, 80 x 96 x 96, batch 1, 4 channels, 3
    classes (BraTS-like), through the Trainer's own ``train_step`` with the patch sampler
    on a synthetic memory-mapped cache: seconds per step and peak RSS.
``cases``
    Peak RSS of the same training with a cache of 10 and of 100 BraTS-sized cases
    (4 x 155 x 240 x 240 float32, 143 MB each: 14 GB on disk for 100). Patches are read
    from memory-mapped files that are unmapped after each copy, so memory must grow with
    the patch, not with the number of cases (target: difference under 500 MB).
``predict``
    Sliding-window prediction of a 200 x 512 x 512 CT-sized volume with an 8-class 3D
    model, label map and uncertainty map, through ``Predictor`` (target: at most 8 GB).

Usage::

    python benchmarks/mem3d.py --out benchmarks/records/DATE-cpu/mem3d.json
    python benchmarks/mem3d.py --quick        # tiny sizes: checks that the script runs

The cache for ``cases`` is written to --work (default a temporary folder) and removed.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BRATS_SHAPE = (155, 240, 240)
CT_SHAPE = (200, 512, 512)


# --- child side ---------------------------------------------------------------------------
def _dataset(root: Path, channels: int, classes: int) -> None:
    """An empty dataset folder: dataset.json only (the cache is written directly)."""
    from dmsps.data.layout import DatasetMeta, DatasetWriter

    labels = {"background": 0, **{f"c{i}": i for i in range(1, classes)}, "ignore": classes}
    names = ["t1", "t1ce", "t2", "flair"][:channels] if channels <= 4 else None
    meta = DatasetMeta("bench", names or [f"ch{i}" for i in range(channels)], labels)
    DatasetWriter(root, meta).finish({"train": [], "val": [], "test": []})


def _write_cache(root: Path, ds_root: Path, cases: int, shape, channels: int, classes: int):
    """Per-case .npy files in the CaseCache layout, filled without holding a case twice."""
    from dmsps.data.cache import CaseCache, scribble_tag
    from dmsps.data.layout import Dataset
    from dmsps.data.normalization import resolve
    from dmsps.io.atomic import write_json

    ds = Dataset(ds_root)
    cache = CaseCache(root, ds, resolve(ds.meta.channel_names))
    tag = scribble_tag(None)
    rng = np.random.default_rng(0)
    for i in range(cases):
        case = f"case{i:03d}"
        for kind, sub in (("images", None), ("scribbles", tag), ("annotated", tag)):
            (root / kind / (sub or "")).mkdir(parents=True, exist_ok=True)
        img = np.lib.format.open_memmap(
            root / "images" / f"{case}.npy", "w+", np.float32, (channels, *shape)
        )
        for c in range(channels):
            img[c] = rng.standard_normal(shape, dtype=np.float32)
        img.flush()
        del img
        scrib = np.full(shape, classes, np.uint8)
        z, y, x = (s // 2 for s in shape)
        for k in range(classes):
            scrib[z, y + 3 * k, x - 20 : x + 20] = k
        np.save(root / "scribbles" / tag / f"{case}.npy", scrib)
        np.save(root / "annotated" / tag / f"{case}.npy", np.argwhere(scrib != classes))
        write_json(
            root / "cases" / f"{case}.json",
            {"case": case, "has_label": False, "grid": list(shape), "scribbles": {}},
        )
    return cache


def _train(args) -> dict:
    import torch

    from dmsps.config import TrainConfig
    from dmsps.data.layout import Dataset
    from dmsps.presets import AUTHORS_3D
    from dmsps.training.samplers import PatchSampler
    from dmsps.training.trainer import Trainer

    work = Path(args.work)
    _dataset(work / "ds", 4, 3)
    t0 = time.perf_counter()
    cache = _write_cache(work / "cache", work / "ds", args.cases, args.shape, 4, 3)
    write_s = time.perf_counter() - t0
    patch = args.patch
    cfg = TrainConfig(
        **AUTHORS_3D,
        patch_size=patch,
        batch_size=1,
        augment=False,
        device=args.device,
        amp=args.amp,
        threads=args.threads,
        rampup=0,
    )
    trainer = Trainer(Dataset(work / "ds"), cfg, work / "run", progress=False)
    cases = [f"case{i:03d}" for i in range(args.cases)]
    sampler = PatchSampler(cache, cases, patch, ignore=3, device=trainer.device)
    cuda = trainer.device.type == "cuda"
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = trainer.build_model()
    opt = trainer.make_optimizer(model)
    model.train()
    times = []
    for it in range(args.steps):
        t = time.perf_counter()
        trainer.set_lr(opt, it)
        trainer.train_step(model, opt, sampler, gen, it)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    gpu = {}
    if cuda:
        gpu = {
            "device": torch.cuda.get_device_name(),
            "amp": args.amp,
            "peak_gpu_gb": torch.cuda.max_memory_allocated() / 1e9,
            "patches_per_s": 1.0 / float(np.median(times[1:])),
        }
    return {
        **gpu,
        "cases": args.cases,
        "case_shape": list(args.shape),
        "patch": list(patch),
        "steps": args.steps,
        "step_s": times,
        "step_s_median_after_first": float(np.median(times[1:])) if len(times) > 1 else None,
        "cache_write_s": write_s,
        "cache_gb": sum(p.stat().st_size for p in (work / "cache").rglob("*.npy")) / 1e9,
    }


def _predict(args) -> dict:
    import torch

    from dmsps.inference.predictor import Predictor
    from dmsps.models.checkpoint import save_checkpoint
    from dmsps.models.unet import DualDecoderNet, ModelConfig
    from dmsps.presets import AUTHORS_3D

    work = Path(args.work)
    cfg = ModelConfig(in_channels=1, num_classes=8, **AUTHORS_3D)
    torch.manual_seed(0)
    model = DualDecoderNet(cfg)
    meta = {
        "model": cfg.to_dict(),
        "spatial_dims": 3,
        "normalization": ["ct-window:-150:250"],
        "inference": {
            "kind": "sliding-window",
            "roi": list(args.patch),
            "overlap": args.overlap,
            "blend": "gaussian",
        },
    }
    save_checkpoint(work / "model.pt", {"model": model.state_dict(), "meta": meta})
    rng = np.random.default_rng(0)
    image = rng.normal(0, 300, (1, *args.shape)).astype(np.float32)
    t = time.perf_counter()
    predictor = Predictor(work / "model.pt", device="cpu", progress=True)
    labels, unc = predictor.segment(image, uncertainty=True, spacing=(2.5, 0.8, 0.8))
    assert unc is not None and unc.shape == labels.shape
    seconds = time.perf_counter() - t
    return {
        "shape": list(args.shape),
        "window": list(args.patch),
        "overlap": args.overlap,
        "classes": 8,
        "outputs": "label map + uncertainty map",
        "seconds": seconds,
        "label_dtype": str(labels.dtype),
    }


def child(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    result = _train(args) if args.task == "train" else _predict(args)
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print("@@mem3d " + json.dumps(result), flush=True)
    return 0


# --- parent side --------------------------------------------------------------------------
def _run_child(argv: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *argv], capture_output=True, text=True
    )
    for line in proc.stdout.splitlines():
        if line.startswith("@@mem3d "):
            return json.loads(line[len("@@mem3d ") :])
    raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--task", default="train", help=argparse.SUPPRESS)
    p.add_argument("--cases", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--shape", type=int, nargs=3, default=list(BRATS_SHAPE), help=argparse.SUPPRESS)
    p.add_argument("--patch", type=int, nargs=3, default=[80, 96, 96], help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=8, help="training steps per measurement")
    p.add_argument("--overlap", type=float, default=0.25, help="prediction window overlap")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (the step measurement)")
    p.add_argument("--amp", default="none", help="none | bf16 | fp16 (cuda)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    p.add_argument("--out", type=Path, default=None, help="write the results here (JSON)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: check the script runs")
    p.add_argument(
        "--only", choices=["step", "cases", "predict"], action="append", help="run only these"
    )
    return p


def main() -> int:
    if "--child" in sys.argv:
        return child([a for a in sys.argv[1:] if a != "--child"])
    args = _parser().parse_args()
    only = set(args.only or ["step", "cases", "predict"])
    scratch = Path(tempfile.mkdtemp(prefix="dmsps-mem3d-", dir=args.work))
    shape = [16, 48, 48] if args.quick else list(BRATS_SHAPE)
    patch = [16, 32, 32] if args.quick else [80, 96, 96]
    ct = [16, 64, 64] if args.quick else list(CT_SHAPE)
    counts = (2, 4) if args.quick else (10, 100)
    steps = 2 if args.quick else args.steps
    common = ["--threads", str(args.threads), "--patch", *map(str, patch)]
    common += ["--device", args.device, "--amp", args.amp]
    report: dict = {
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}), "
        f"{args.threads} threads",
        "date": time.strftime("%Y-%m-%d"),
    }
    try:
        if only & {"step", "cases"}:
            runs = {}
            for n in counts if "cases" in only else counts[:1]:
                work = scratch / f"cases{n}"
                work.mkdir()
                runs[n] = _run_child(
                    ["--task", "train", "--cases", str(n), "--steps", str(steps),
                     "--shape", *map(str, shape), "--work", str(work), *common]
                )  # fmt: skip
                shutil.rmtree(work)
                print(
                    f"{n:4d} cases: peak RSS {runs[n]['peak_rss_gb']:.2f} GB, step "
                    f"{runs[n]['step_s_median_after_first'] or float('nan'):.2f} s "
                    f"(cache {runs[n]['cache_gb']:.1f} GB on disk)",
                    flush=True,
                )
            report["train"] = {str(k): v for k, v in runs.items()}
            if len(runs) == 2:
                a, b = (runs[n]["peak_rss_gb"] for n in counts)
                report["rss_growth_gb"] = b - a
                print(f"peak RSS {counts[1]} vs {counts[0]} cases: {b - a:+.3f} GB", flush=True)
        if "predict" in only:
            work = scratch / "predict"
            work.mkdir()
            res = _run_child(
                ["--task", "predict", "--shape", *map(str, ct), "--work", str(work),
                 "--overlap", str(args.overlap), *common]
            )  # fmt: skip
            report["predict"] = res
            print(
                f"predict {ct}: peak RSS {res['peak_rss_gb']:.2f} GB, {res['seconds']:.0f} s",
                flush=True,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.out:
        from dmsps.io.atomic import write_json

        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

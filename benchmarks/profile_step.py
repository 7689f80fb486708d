"""Where a training step's time goes: torch.profiler op table, ours next to the baseline.

    python benchmarks/profile_step.py --size 128 --batch 12 --steps 6
    python benchmarks/profile_step.py --size 256 --batch 24 --path ours --top 30

Builds exactly the steps that ``benchmarks/speed.py`` times (ours: the Trainer's own
``train_step``; baseline: ``benchmarks/baseline.py``) on the same synthetic data, warms
up, then profiles a few steps and prints the operators by self CPU time. Use it to find
what to optimise next; ``speed.py`` stays the place for the published figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dmsps.device import tune_glibc_malloc
from speed import BaselineTrain, OursTrain, Spec, _median


def profile(path: str, args: argparse.Namespace) -> None:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    spec = Spec(name=path, path=path, size=args.size, batch=args.batch, device="cpu")
    runner = OursTrain(spec) if path == "ours" else BaselineTrain(spec)
    runner.handle({"cmd": "steps", "n": args.warmup})
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        res = runner.handle({"cmd": "steps", "n": args.steps})
    step = _median(res["step_s"])
    print(
        f"\n=== {path}: {args.size}x{args.size}, batch {args.batch}, "
        f"{torch.get_num_threads()} threads; median step {step * 1000:.0f} ms "
        f"({args.batch / step:.2f} img/s; the profiler adds overhead) ==="
    )
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top)
    print(table)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--steps", type=int, default=4, help="profiled steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top", type=int, default=25, help="operators to list")
    p.add_argument("--path", choices=["ours", "baseline", "both"], default="both")
    args = p.parse_args()
    tune_glibc_malloc()  # as speed.py's workers do for both paths
    for path in ("ours", "baseline") if args.path == "both" else (args.path,):
        profile(path, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Seconds per training step of a plan's stage-1 network at other patch and batch sizes.

The planner times one configuration; comparing a planner rule (slabs of 4 slices, 6 a
step, against 2 whole stacks of 10) needs both timed in one process on one machine, so
the figure is a ratio, not two numbers from different days. Each configuration is timed
twice, alternating, through the planner's own ``measure_step`` (the training loop's
``train_step`` on random data).

    python benchmarks/plan_step_times.py PLAN.json DATA 4,128,112x6 10,128,112x2 [...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
from pathlib import Path

from dmsps.config import RunConfig, from_dict
from dmsps.data.layout import Dataset
from dmsps.planning.planner import measure_step
from dmsps.training.trainer import Trainer


def parse(spec: str) -> tuple[list[int], int]:
    patch, batch = spec.split("x")
    return [int(v) for v in patch.split(",")], int(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", type=Path, help="a settings file (dmsps plan --out)")
    parser.add_argument("data", type=Path, help="the dataset it was planned for")
    parser.add_argument("configs", nargs="+", help="PATCH x BATCH, e.g. 4,128,112x6")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    stage1 = from_dict(RunConfig, json.loads(args.plan.read_text())).stage1
    ds = Dataset(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        seconds = measure_step(
            lambda c: Trainer(ds, dataclasses.replace(c, device=args.device), Path(tmp), False)
        )
        times: dict[str, list[float]] = {spec: [] for spec in args.configs}
        for _ in range(2):
            for spec in args.configs:
                patch, batch = parse(spec)
                cfg = dataclasses.replace(stage1, patch_size=patch, batch_size=batch)
                times[spec].append(round(seconds(cfg), 3))
    first = min(times[args.configs[0]])
    rows = []
    for spec, values in times.items():
        patch, batch = parse(spec)
        rows.append(
            dict(
                patch=patch,
                batch=batch,
                slices_per_step=patch[0] * batch,
                seconds=values,
                ratio_to_first=round(min(values) / first, 2),
            )
        )
        print(f"{spec:>16}: {min(values):.3f} s a step ({values}), x{rows[-1]['ratio_to_first']}")
    if args.out:
        result = dict(plan=str(args.plan), machine=platform.processor() or platform.machine(),
                      widths=stage1.features, rows=rows)  # fmt: skip
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

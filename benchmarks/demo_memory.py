"""Long-run check: several `dmsps demo` runs in one process must not grow in memory.

A leak (a cache that is never freed, tensors kept alive by a global, a growing log)
shows when the same work repeats in one process, as it does in a notebook or a service
that trains several models. This runs the demo N times in this process, each into a
fresh folder, samples the resident memory (VmRSS) every 0.1 s, and reports per run:
peak RSS, RSS after the run (after garbage collection), and wall time.

    python benchmarks/demo_memory.py --runs 3 --task cardiac --out bench-out/demo-memory

Exit status 1 if the last run's peak exceeds the first run's by more than --tolerance-mb.
"""

from __future__ import annotations

import argparse
import gc
import json
import threading
import time
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakSampler:
    """Highest VmRSS seen between start() and stop()."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval, self.peak = interval, 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self.peak = rss_mb()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--task", default="cardiac", choices=("cardiac", "abdomen", "brain"))
    ap.add_argument("--out", type=Path, default=Path("bench-out/demo-memory"))
    ap.add_argument("--tolerance-mb", type=float, default=150.0)
    args = ap.parse_args()

    from dmsps.cli import main as dmsps

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.runs):
        target = args.out / f"run{i + 1}"
        if target.exists():
            raise SystemExit(f"{target} exists: each run needs a fresh folder (another --out)")
        t0 = time.perf_counter()
        with PeakSampler() as sampler:
            code = dmsps(["demo", "--task", args.task, "--out", str(target), "--quiet"])
        gc.collect()
        row = {
            "run": i + 1,
            "exit": code,
            "peak_rss_mb": round(sampler.peak, 1),
            "rss_after_mb": round(rss_mb(), 1),
            "minutes": round((time.perf_counter() - t0) / 60, 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    growth = rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
    result = {"task": args.task, "runs": rows, "peak_growth_mb": round(growth, 1)}
    (args.out / "demo_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"peak RSS growth from run 1 to run {args.runs}: {growth:+.1f} MB")
    failed = any(r["exit"] != 0 for r in rows) or growth > args.tolerance_mb
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

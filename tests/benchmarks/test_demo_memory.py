"""benchmarks/demo_memory.py: the report and the verdict, with a stand-in for the demo."""

from __future__ import annotations

import json
import sys

import numpy as np

from tests.benchmarks import load_benchmark


def _run(monkeypatch, tmp_path, demo, *extra) -> tuple[int, dict]:
    bench = load_benchmark("demo_memory")
    import dmsps.cli

    monkeypatch.setattr(dmsps.cli, "main", demo)
    out = tmp_path / "mem"
    monkeypatch.setattr(sys, "argv", ["demo_memory.py", "--out", str(out), *extra])
    code = bench.main()
    return code, json.loads((out / "demo_memory.json").read_text())


def test_steady_runs_pass_and_are_reported(monkeypatch, tmp_path):
    def demo(argv):
        block = np.ones(5_000_000)  # 40 MB, freed again after each run
        return 0 if block.sum() else 1

    code, report = _run(monkeypatch, tmp_path, demo, "--runs", "2")
    assert code == 0 and [r["run"] for r in report["runs"]] == [1, 2]
    assert all(r["peak_rss_mb"] >= r["rss_after_mb"] > 0 for r in report["runs"])


def test_a_leak_fails(monkeypatch, tmp_path):
    kept = []

    def leaky_demo(argv):
        kept.append(np.ones(40_000_000))  # 320 MB that stays alive
        return 0

    code, report = _run(monkeypatch, tmp_path, leaky_demo, "--runs", "2", "--tolerance-mb", "100")
    assert code == 1 and report["peak_growth_mb"] > 100

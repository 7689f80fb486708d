"""benchmarks/mem3d.py runs end to end at tiny sizes (the figures come from full runs)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.benchmarks import ROOT


def test_mem3d_quick(tmp_path):
    out = tmp_path / "mem3d.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "mem3d.py"), "--quick", "--threads", "1",
         "--out", str(out)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert set(report["train"]) == {"2", "4"} and report["predict"]["seconds"] > 0
    assert all(run["peak_rss_gb"] > 0 for run in report["train"].values())

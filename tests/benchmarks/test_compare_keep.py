"""benchmarks/compare_keep.py: finished runs out and back, and never into a git-ignored folder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.benchmarks import ROOT, load_benchmark

compare_keep = load_benchmark("compare_keep")


def _run(cmp: Path, name: str, finished: bool) -> None:
    run = cmp / "runs" / name
    (run / "stage1/checkpoints").mkdir(parents=True)
    (run / "compare.json").write_text("{}")
    (run / "stage1/final.json").write_text('{"train_seconds": 1}')
    (run / "stage1/checkpoints/last.pt").write_bytes(b"weights")
    if finished:
        (run / "metrics/stage1").mkdir(parents=True)
        (run / "metrics/stage1/summary.json").write_text("{}")


def test_save_keeps_finished_runs_small_and_restore_puts_them_back(tmp_path, capsys):
    cmp, keep, back = tmp_path / "cmp", tmp_path / "keep", tmp_path / "back"
    _run(cmp, "pce-s0", finished=True)
    _run(cmp, "pce-s1", finished=False)
    assert compare_keep.save(cmp, keep) == 0
    kept = sorted(p.relative_to(keep).as_posix() for p in keep.rglob("*") if p.is_file())
    assert kept == [
        "runs/pce-s0/compare.json",
        "runs/pce-s0/metrics/stage1/summary.json",
        "runs/pce-s0/stage1/final.json",
    ]  # no checkpoint, no unfinished run
    assert "not finished, not kept: pce-s1" in capsys.readouterr().out
    (back / "runs/pce-s0").mkdir(parents=True)
    (back / "runs/pce-s0/compare.json").write_text('{"mine": 1}')
    assert compare_keep.restore(keep, back) == 0
    assert compare_keep.finished(back / "runs/pce-s0")
    assert (back / "runs/pce-s0/compare.json").read_text() == '{"mine": 1}'  # not overwritten


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_save_fails_when_git_would_leave_the_kept_files_out(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("runs/\n")  # as this repository ignores scratch runs
    cmp = tmp_path / "cmp"
    _run(cmp, "em-s0", finished=True)
    assert compare_keep.save(cmp, repo / "records/cmp") == 1
    assert "git ignores 3 of the kept files" in capsys.readouterr().err
    (repo / ".gitignore").write_text("runs/\n!records/**/runs/\n")
    assert compare_keep.save(cmp, repo / "records/cmp") == 0


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs this repository's git folder")
def test_this_repository_commits_kept_records():
    probe = ROOT / "benchmarks/records/any-day/compare/runs/pce-s0/compare.json"
    assert compare_keep.git_ignored([probe]) == []

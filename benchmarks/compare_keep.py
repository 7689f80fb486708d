"""Keep a `dmsps compare` folder's finished runs as small files, and put them back.

A comparison at the CPU budget takes longer than one working session on a 2-core machine,
and a session's scratch folder does not outlive it. `dmsps compare` skips a run whose
settings record (compare.json) and metrics summaries exist, and builds its table from
those summaries and each stage's final.json (training time). Those files are a few kB per
run, so they can be kept in benchmarks/records/ and restored into a new output folder;
rerunning the same compare command then trains only the runs still missing.

    python benchmarks/compare_keep.py save bench-out/compare-acdc1000 RECORDS/compare_acdc1000
    python benchmarks/compare_keep.py restore RECORDS/compare_acdc1000 bench-out/compare-acdc1000

`save` copies finished runs only (an unfinished one has no summary yet; it resumes from
its own checkpoints or starts again). `restore` never overwrites a file that exists.
Checkpoints, predictions and the case cache are not kept: a restored run can be
tabulated, not predicted with again.
`save` exits 1 when git would ignore the kept files (this repository ignores every
`runs/` folder as scratch, and once kept a whole comparison out of its commits that way).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from dmsps.io.atomic import atomic_path

#: Per run, relative to runs/<method>-s<seed>/: what compare needs to skip and tabulate
#: a run, plus the training logs and settings a reader wants beside the numbers.
KEPT = ("compare.json", "config.json", "*/final.json", "*/log.csv", "*/config.json", "metrics/*/*")


def finished(run: Path) -> bool:
    """compare.json and at least one evaluated stage (compare checks the rest itself)."""
    return (run / "compare.json").is_file() and any(run.glob("metrics/*/summary.json"))


def kept_files(run: Path) -> list[Path]:
    files = {p for pattern in KEPT for p in run.glob(pattern) if p.is_file()}
    return sorted(p for p in files if not p.name.startswith("."))


def copy_tree(pairs: list[tuple[Path, Path]], overwrite: bool) -> int:
    n = 0
    for src, dst in pairs:
        if dst.exists() and not overwrite:
            continue
        with atomic_path(dst) as tmp:
            shutil.copy2(src, tmp)
        n += 1
    return n


def git_ignored(paths: list[Path]) -> list[Path]:
    """Those of ``paths`` that git would leave out of a commit (none outside a work tree).

    The repository ignores every ``runs/`` folder as scratch; kept records must not be.
    """
    if not paths:
        return []
    try:
        out = subprocess.run(
            ["git", "check-ignore", "--stdin"],
            input="\n".join(str(p.resolve()) for p in paths),
            capture_output=True,
            text=True,
            cwd=next(p for p in paths[0].resolve().parents if p.is_dir()),
            check=False,
        )
    except OSError:  # no git here
        return []
    return [Path(line) for line in out.stdout.splitlines() if line]


def save(compare_dir: Path, keep_dir: Path) -> int:
    runs = sorted(p for p in (compare_dir / "runs").glob("*") if p.is_dir())
    if not runs:
        print(f"{compare_dir}: no runs/ folder with runs in it", file=sys.stderr)
        return 1
    done = [r for r in runs if finished(r)]
    pairs = [
        (f, keep_dir / "runs" / r.name / f.relative_to(r)) for r in done for f in kept_files(r)
    ]
    n = copy_tree(pairs, overwrite=True)
    for name in ("comparison.md", "comparison.csv"):
        if (compare_dir / name).is_file():
            n += copy_tree([(compare_dir / name, keep_dir / name)], overwrite=True)
    skipped = sorted(set(r.name for r in runs) - set(r.name for r in done))
    print(f"kept {len(done)} finished run(s) ({n} files) in {keep_dir}")
    if skipped:
        print(f"not finished, not kept: {', '.join(skipped)}")
    ignored = git_ignored([dst for _, dst in pairs])
    if ignored:
        print(
            f"warning: git ignores {len(ignored)} of the kept files (e.g. {ignored[0]}): "
            "a commit would leave them out; un-ignore the folder in .gitignore",
            file=sys.stderr,
        )
        return 1
    return 0


def restore(keep_dir: Path, compare_dir: Path) -> int:
    runs = sorted(p for p in (keep_dir / "runs").glob("*") if p.is_dir())
    if not runs:
        print(f"{keep_dir}: no kept runs", file=sys.stderr)
        return 1
    pairs = [
        (f, compare_dir / "runs" / r.name / f.relative_to(r))
        for r in runs
        for f in sorted(r.rglob("*"))
        if f.is_file()
    ]
    n = copy_tree(pairs, overwrite=False)
    print(f"restored {len(runs)} run(s) ({n} new files) into {compare_dir}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="action", required=True)
    s = sub.add_parser("save", help="copy finished runs' result files out of a compare folder")
    s.add_argument("compare_dir", type=Path)
    s.add_argument("keep_dir", type=Path)
    r = sub.add_parser("restore", help="copy kept runs back into a compare folder")
    r.add_argument("keep_dir", type=Path)
    r.add_argument("compare_dir", type=Path)
    args = ap.parse_args()
    if args.action == "save":
        return save(args.compare_dir, args.keep_dir)
    return restore(args.keep_dir, args.compare_dir)


if __name__ == "__main__":
    sys.exit(main())

"""`dmsps annotate`: one local page to scribble, train, review and be told where next."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "annotate"
HELP = "draw scribbles in the browser, train, review predictions, see where to scribble next"
DESCRIPTION = """\
Serve one page for the dataset DATA: every case with its annotation status (slices
scribbled per class), slices in three planes with zoom, pan and window/level, the
reference labels, a class palette from dataset.json with brush, eraser, undo and redo.
Save writes scribblesTr/<case>.nii.gz atomically on the image's grid and keeps the
previous file in scribblesTr.bak/; images and labels are never written.

With --model (a checkpoint, a `dmsps run` folder or a shipped model's name) the page
shows the prediction and the uncertainty of the case on screen, and "Next" goes to the
slice without scribbles where the model is least sure (`dmsps suggest` ranks the same
way). "Train" runs `dmsps run DATA` in the background into --runs (resumable: the same
scribbles and settings continue the same run folder) and loads the new model at the end.

The page and everything it loads ship inside dmsps: no network is used. The server
listens on 127.0.0.1 and prints a URL with an access token; requests without it are
refused. On a remote GPU machine, forward the port over SSH:
  ssh -L 8765:127.0.0.1:8765 user@gpu-host   # then open the printed URL locally

Keys: wheel or up/down (page up/down) slices; Ctrl+wheel zoom; right drag window/level;
middle drag (or space + drag) pan; shift+click moves the cross in the other planes;
0-9 class, E eraser, [ ] brush size, Ctrl+Z / Ctrl+Y undo / redo, Ctrl+S save,
A C S plane, V three planes, F fit, L P U H overlays, N next suggestion.
Ctrl-C stops the server (and a training job it started; rerun Train to resume it).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, metavar="DATA", help="dataset folder")
    parser.add_argument(
        "--model",
        metavar="CKPT|RUN_DIR",
        help="a checkpoint (.pt), a `dmsps run` folder, or a shipped model's name",
    )
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; use an SSH "
        "tunnel rather than opening it to the network)",
    )
    parser.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="folder for the run folders Train makes (default: DATA-runs beside DATA)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda, for predictions")
    parser.add_argument(
        "--cache-mb",
        type=int,
        default=1024,
        help="memory for open images, labels and predictions (MB; least recently used first out)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")


def run(args: argparse.Namespace) -> int:
    import signal
    import sys

    from dmsps.annotate.jobs import interruptible_jobs
    from dmsps.annotate.server import App, make_server, url_of
    from dmsps.annotate.workspace import Workspace
    from dmsps.errors import DmspsError
    from dmsps.io.paths import is_within

    interruptible_jobs()  # Ctrl-C stops the server and its job even when started with `&`
    if args.cache_mb < 1:
        raise DmspsError(f"--cache-mb must be at least 1, got {args.cache_mb}")
    if not 0 <= args.port <= 65535:
        raise DmspsError(f"--port must be in 0..65535, got {args.port}")
    workspace = Workspace(args.dataset, args.cache_mb << 20, args.model, args.device)
    runs = (args.runs or workspace.root.parent / f"{workspace.root.name}-runs").resolve()
    if is_within(runs, workspace.root):
        raise DmspsError(
            f"{runs}: the run folders must lie outside the dataset {workspace.root} (runs "
            "write predictions, which never go into an input folder); choose another --runs"
        )
    app = App(workspace, runs, verbose=args.verbose)
    server = make_server(app, args.host, args.port)
    print(f"dmsps annotate: {workspace.root} ({len(workspace.cases)} cases)", flush=True)
    if workspace.model_path is not None:
        print(f"model: {workspace.model_path}", flush=True)
    print(f"open {url_of(server)}", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: listening on {args.host}: other machines can reach the page (the token "
            "still guards it); an SSH tunnel to 127.0.0.1 is safer",
            file=sys.stderr,
        )
    port = server.server_address[1]
    print(
        f"remote machine? ssh -L {port}:127.0.0.1:{port} HOST, then open the URL above "
        "locally. Ctrl-C stops.",
        flush=True,
    )

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    app.start_background()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        print("dmsps annotate: stopping", file=sys.stderr, flush=True)
        app.close()
        server.server_close()
    print("dmsps annotate: stopped", file=sys.stderr, flush=True)
    return 0

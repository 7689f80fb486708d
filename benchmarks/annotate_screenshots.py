"""The README's screenshots of `dmsps annotate`, taken in a headless Chromium.

    dmsps synth cardiac /tmp/shots/cardiac --cases 6 --size 128
    dmsps synth abdomen /tmp/shots/word-raw --cases 3
    dmsps import word /tmp/shots/word-raw /tmp/shots/word
    python benchmarks/annotate_screenshots.py /tmp/shots/cardiac /tmp/shots/word \
        --model2d acdc --out docs/images

2D: synthetic cine-MRI with the shipped ACDC model's prediction and uncertainty, the
suggestion list after "Next". 3D: synthetic abdominal CT in three planes, abdomen window,
reference labels and scribbles. Each PNG is reduced to a 256-colour palette (Pillow) to
stay small. Needs Chromium (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

from PIL import Image

from dmsps.annotate.browser import Chromium
from dmsps.annotate.server import App, make_server, serve_in_thread
from dmsps.annotate.workspace import Workspace


def start(dataset: Path, model: str | None, runs: Path):
    app = App(Workspace(dataset, model=model, device="cpu"), runs)
    server = make_server(app, "127.0.0.1", 0)
    serve_in_thread(server)
    app.start_background()
    return server, f"http://127.0.0.1:{server.server_address[1]}/?token={app.token}"


def settle(page, seconds: float = 0.4) -> None:
    page.wait_for("window.dmsps && dmsps.ready && !dmsps.busy()", timeout=120)
    time.sleep(seconds)


def save_png(png: bytes, path: Path) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    small = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    small.save(path, optimize=True)
    print(f"{path}: {path.stat().st_size / 1024:.0f} KB")


def shot_2d(browser, url: str, out: Path) -> None:
    page = browser.new_page(1280, 720)
    page.goto(url)
    settle(page)
    page.evaluate("dmsps.next()")
    settle(page, 0.2)
    page.wait_for("dmsps.state.suggestions.length > 0", timeout=300)
    for key in ("prediction", "uncertainty"):
        page.evaluate(f"document.getElementById('layer-{key}').click()")
    settle(page, 0.8)
    view = page.evaluate(
        "(() => { const r = dmsps.state.views[0].canvas.getBoundingClientRect();"
        " return [r.x + r.width * 0.62, r.y + r.height * 0.45]; })()"
    )
    page.mouse("mouseMoved", view[0], view[1], button="none")
    time.sleep(0.3)
    save_png(page.screenshot(), out / "annotate-2d.png")


def shot_3d(browser, url: str, out: Path) -> None:
    page = browser.new_page(1280, 720)
    page.goto(url)
    settle(page)
    page.evaluate("dmsps.toggleLayout()")
    page.evaluate(
        "(() => { const s = document.getElementById('window-preset'); s.value = '350,50';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    page.evaluate("document.getElementById('layer-label').click()")
    settle(page, 0.8)
    save_png(page.screenshot(), out / "annotate-3d.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data2d", type=Path)
    parser.add_argument("data3d", type=Path)
    parser.add_argument("--model2d", default="acdc", help="model for the 2D shot")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--runs", type=Path, default=Path("/tmp/dmsps-screenshot-runs"))
    args = parser.parse_args(argv)
    servers = []
    with Chromium(timeout=300) as browser:
        server, url = start(args.data2d, args.model2d, args.runs)
        servers.append(server)
        shot_2d(browser, url, args.out)
        server, url = start(args.data3d, None, args.runs)
        servers.append(server)
        shot_3d(browser, url, args.out)
    for server in servers:
        server.app.close()
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

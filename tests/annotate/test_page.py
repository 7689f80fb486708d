"""End to end in a real headless Chromium: open the page, pick a class, draw a stroke with
mouse events, save, and check the NIfTI; on a 2D stack and on a 3D case in a side plane.

Skipped, with the reason, where no Chromium is installed (Debian: apt-get install
chromium; or point $DMSPS_CHROMIUM at one).
"""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dmsps.annotate.browser import Chromium, find_chromium


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip("no chromium found: apt-get install chromium (or set $DMSPS_CHROMIUM)")
    with Chromium(timeout=30) as b:
        yield b


def open_page(browser, client, case: str):
    page = browser.new_page(1280, 800)
    page.goto(f"{client.base}/?token={client.token}")
    page.wait_for("window.dmsps && window.dmsps.ready")
    page.click_selector(f'#cases li[data-case="{case}"]')
    page.wait_for(f"dmsps.state.caseName === '{case}' && !dmsps.busy()")
    return page


def stroke_voxels(p0, p1, spacing, radius_mm):
    """Voxels (row, col) the stroke must cover (each sample point's own voxel) and the
    ones it may cover (centre within the brush radius of the segment, plus a voxel)."""
    (r0, c0), (r1, c1) = p0, p1
    must = set()
    for k in range(101):
        f = k / 100
        must.add((math.floor(r0 + (r1 - r0) * f), math.floor(c0 + (c1 - c0) * f)))
    rs, cs = spacing

    def near(r, c):
        # distance in mm from the voxel's centre to the segment (in continuous coords)
        ax, ay, bx, by = c0 * cs, r0 * rs, c1 * cs, r1 * rs
        px, py = (c + 0.5) * cs, (r + 0.5) * rs
        t = max(
            0,
            min(
                1,
                ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2),
            ),
        )
        return math.hypot(px - (ax + t * (bx - ax)), py - (ay + t * (by - ay)))

    slack = radius_mm + math.hypot(rs, cs)
    return must, near, slack


def draw_and_save(page, view, p0, p1):
    a = page.evaluate(f"dmsps.clientPoint({view}, {p0[0]}, {p0[1]})")
    b = page.evaluate(f"dmsps.clientPoint({view}, {p1[0]}, {p1[1]})")
    page.mouse_drag([(a["x"], a["y"]), (b["x"], b["y"])], steps=8)
    changed = page.evaluate("dmsps.state.changes.size")
    assert changed > 0
    page.click_selector("#save")
    page.wait_for("dmsps.state.lastSave && dmsps.state.changes.size === 0 && !dmsps.busy()")
    return page.evaluate("dmsps.state.lastSave")


def check_stroke(plane_map, value, ignore, p0, p1, spacing, radius_mm):
    must, near, slack = stroke_voxels(p0, p1, spacing, radius_mm)
    painted = {(int(r), int(c)) for r, c in zip(*np.nonzero(plane_map != ignore), strict=True)}
    assert must <= painted, sorted(must - painted)[:5]
    assert all(near(r, c) <= slack for r, c in painted), "paint far from the stroke"
    assert (plane_map[plane_map != ignore] == value).all()


def test_draw_on_a_2d_stack_and_save(browser, tiny_dataset, serve):
    case = "case001"
    (tiny_dataset / "scribblesTr" / f"{case}.nii.gz").unlink()  # start without scribbles
    _, client = serve(tiny_dataset)
    page = open_page(browser, client, case)
    page.key("2")  # class 2 (Myo) from the keyboard
    assert page.evaluate("dmsps.state.value") == 2
    assert page.evaluate("document.querySelector('#palette button.active').dataset.value") == "2"
    index = page.evaluate("dmsps.state.views[0].index")
    p0, p1 = (10.5, 6.5), (20.5, 25.5)  # (row y, col x), continuous voxel coordinates
    saved = draw_and_save(page, 0, p0, p1)
    assert saved["case"] == case and saved["status"]["slices_per_class"] == [0, 0, 1, 0]
    path = tiny_dataset / "scribblesTr" / f"{case}.nii.gz"
    img = nib.load(str(path))
    image = nib.load(str(tiny_dataset / "imagesTr" / f"{case}_0000.nii.gz"))
    np.testing.assert_allclose(img.affine, image.affine)
    zyx = np.transpose(np.asanyarray(img.dataobj), (2, 1, 0))
    others = np.delete(zyx, index, axis=0)
    assert (others == 4).all()  # unannotated everywhere else
    brush = page.evaluate("dmsps.state.brush")
    radius = max(brush / 2, 0.5) * min(1.5, 1.25)
    check_stroke(zyx[index], 2, 4, p0, p1, (1.5, 1.25), radius)
    # Undo and save from the keyboard: the stroke is gone; redo and save: it is back.
    for key, code, expect_empty in (("z", "KeyZ", True), ("y", "KeyY", False)):
        page.key(key, code, modifiers=2)
        page.key("s", "KeyS", modifiers=2)
        page.wait_for("dmsps.state.changes.size === 0 && !dmsps.busy()")
        zyx = np.transpose(np.asanyarray(nib.load(str(path)).dataobj), (2, 1, 0))
        assert (zyx == 4).all() == expect_empty
    # The eraser (E) over the stroke's first half, then save: only the second half stays.
    page.key("e")
    assert page.evaluate("dmsps.state.eraser")
    page.key("]")  # a wider brush
    a = page.evaluate(f"dmsps.clientPoint(0, {p0[0]}, {p0[1] - 2})")
    b = page.evaluate("dmsps.clientPoint(0, 15.5, 16)")
    page.mouse_drag([(a["x"], a["y"]), (b["x"], b["y"])], steps=8)
    page.click_selector("#save")
    page.wait_for("dmsps.state.changes.size === 0 && !dmsps.busy()")
    zyx = np.transpose(np.asanyarray(nib.load(str(path)).dataobj), (2, 1, 0))
    assert (zyx[index, 10, 6:9] == 4).all() and (zyx[index, 20, 23:26] == 2).any()
    assert set(np.unique(zyx)) == {2, 4}
    assert (tiny_dataset / "scribblesTr.bak" / f"{case}.nii.gz").is_file()
    assert page.console_errors() == []


def test_draw_on_a_3d_case_in_the_coronal_plane(browser, tiny_dataset_3d, serve):
    case = "case000"
    (tiny_dataset_3d / "scribblesTr" / f"{case}.nii.gz").unlink()
    _, client = serve(tiny_dataset_3d)
    page = open_page(browser, client, case)
    assert page.evaluate("document.getElementById('channel').options.length") == 2
    page.click_selector('#planes button[data-plane="coronal"]')
    page.wait_for("dmsps.state.views[0].plane === 'coronal' && !dmsps.busy()")
    start = page.evaluate("dmsps.state.views[0].index")
    for _ in range(4):
        page.key("ArrowUp")
    page.wait_for("!dmsps.busy()")
    y = page.evaluate("dmsps.state.views[0].index")
    assert y == start - 4
    # Anisotropic voxels: a 5 mm slice step is drawn four times a 1.25 mm column.
    v0 = page.evaluate("dmsps.clientPoint(0, 0, 0)")
    v1 = page.evaluate("dmsps.clientPoint(0, 1, 1)")
    assert abs(v1["y"] - v0["y"]) / abs(v1["x"] - v0["x"]) == pytest.approx(5.0 / 1.25, rel=1e-3)
    assert v1["y"] < v0["y"]  # the slice axis points up in side planes
    page.click_selector('#palette button[data-value="2"]')
    p0, p1 = (1.5, 4.5), (6.5, 27.5)  # (row z, col x)
    saved = draw_and_save(page, 0, p0, p1)
    assert saved["voxels"] > 0
    path = tiny_dataset_3d / "scribblesTr" / f"{case}.nii.gz"
    zyx = np.transpose(np.asanyarray(nib.load(str(path)).dataobj), (2, 1, 0))
    assert zyx.shape == (8, 32, 32)
    assert (np.delete(zyx, y, axis=1) == 4).all()  # only the coronal slice y was drawn on
    brush = page.evaluate("dmsps.state.brush")
    radius = max(brush / 2, 0.5) * min(5.0, 1.25)
    check_stroke(zyx[:, y, :], 2, 4, p0, p1, (5.0, 1.25), radius)
    assert page.console_errors() == []


def test_page_assets_exist():
    from importlib import resources

    static = Path(str(resources.files("dmsps.annotate").joinpath("static")))
    assert {p.name for p in static.iterdir()} >= {"index.html", "app.js", "style.css"}

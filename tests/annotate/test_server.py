"""The HTTP API on loopback: the token, the routes, the refusals, the event stream."""

from __future__ import annotations

import gzip
import http.client
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.annotate.conftest import erase_slices


def snapshot(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_nothing_without_the_token(tiny_dataset, serve):
    server, client = serve(tiny_dataset)
    for path in ("/", "/static/app.js", "/api/info", "/api/cases", "/api/events"):
        status, _, body = client.request("GET", path, token=False)
        assert status == 403, path
        assert b"token" in body
    status, _, _ = client.request("GET", "/api/info", token=False, headers={"X-Dmsps-Token": "x"})
    assert status == 403
    status, _, _ = client.request("GET", "/?token=wrong", token=False)
    assert status == 403
    # The URL's token becomes a cookie (the redirect drops it from the address bar).
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.request("GET", f"/?token={client.token}")
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 303 and reply.getheader("Location") == "/"
    cookie = reply.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = cookie.split(";")[0]
    conn.request("GET", "/", headers={"Cookie": jar})
    page = conn.getresponse()
    html = page.read().decode()
    assert page.status == 200 and client.token in html  # for the page's own requests
    assert "default-src 'none'" in page.getheader("Content-Security-Policy")
    assert "http" not in html.replace("http-equiv", "")  # nothing loaded from elsewhere
    # A POST needs the header: a cookie alone (which another site could make the browser
    # send) is not enough.
    conn.request("POST", "/api/train/cancel", body=b"{}", headers={"Cookie": jar})
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 403
    conn.close()


def test_assets_ship_in_the_package_and_use_no_network():
    from importlib import resources

    static = resources.files("dmsps.annotate").joinpath("static")
    for name in ("index.html", "app.js", "style.css"):
        text = static.joinpath(name).read_text()
        assert "http://" not in text and "https://" not in text, name
        assert "//cdn" not in text and "@import" not in text, name


def test_cases_slices_and_a_save(tiny_dataset, serve):
    _, client = serve(tiny_dataset)
    status, info = client.json("GET", "/api/info")
    assert status == 200
    assert [c["name"] for c in info["classes"]] == ["background", "RV", "Myo", "LV"]
    assert info["ignore"] == 4 and info["model"] is None and info["default_preset"] == "acdc"
    status, cases = client.json("GET", "/api/cases")
    names = [c["name"] for c in cases["cases"]]
    assert names == [f"case{i:03d}" for i in range(8)]
    assert cases["cases"][6]["split"] == "test"
    status, case = client.json("GET", "/api/case?case=case001")
    assert case["shape"] == [3, 32, 32] and case["spacing"] == [5.0, 1.5, 1.25]
    assert case["status"]["slices_per_class"] == [3, 3, 3, 3]
    # A coronal image slice: float32 (Z, X), gzip when asked for.
    status, headers, body = client.request(
        "GET",
        "/api/slice?case=case001&layer=image&plane=coronal&index=7",
        headers={"Accept-Encoding": "gzip"},
    )
    assert status == 200 and headers["X-Shape"] == "3,32" and headers["X-Dtype"] == "float32"
    raw = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
    got = np.frombuffer(raw, "<f4").reshape(3, 32)
    image = np.transpose(
        nib.load(str(tiny_dataset / "imagesTr" / "case001_0000.nii.gz")).get_fdata(), (2, 1, 0)
    )
    np.testing.assert_allclose(got, image[:, 7, :], rtol=1e-6)
    status, headers, body = client.request("GET", "/api/scribble?case=case001")
    assert headers["X-Shape"] == "3,32,32" and len(body) == 3 * 32 * 32
    version = headers["X-Version"]
    stroke = {"value": 2, "voxels": [0, 1, 1, 0, 1, 2]}
    status, saved = client.json(
        "POST",
        "/api/scribble?case=case001",
        {"shape": [3, 32, 32], "base": version, "strokes": [stroke]},
    )
    assert status == 200 and saved["voxels"] == 2 and not saved["merged"]
    status, headers, body = client.request("GET", "/api/scribble?case=case001")
    assert np.frombuffer(body, np.uint8).reshape(3, 32, 32)[0, 1, 1:3].tolist() == [2, 2]
    assert headers["X-Version"] == saved["version"] != version
    # A tab still holding the old version: its strokes are applied on top, and it is told.
    stroke = {"value": 1, "voxels": [2, 0, 0]}
    status, again = client.json(
        "POST", "/api/scribble?case=case001", {"base": version, "strokes": [stroke]}
    )
    assert again["merged"]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/scribble?case=..%2F..%2Fetc", {"strokes": []}, 404, "no case"),
        (
            "/api/scribble?case=case000",
            {"strokes": [{"value": 9, "voxels": [0, 0, 0]}]},
            400,
            "not in dataset.json",
        ),
        (
            "/api/scribble?case=case000",
            {"strokes": [{"value": 1, "voxels": [3, 0, 0]}]},
            400,
            "outside the image",
        ),
        ("/api/scribble?case=case000", b'{"strokes": [', 400, "malformed JSON"),
        ("/api/scribble?case=case000", b"\xff\xfe", 400, "malformed JSON"),
        ("/api/scribble", {"strokes": []}, 400, "missing parameter 'case'"),
        ("/api/scribble?case=case000", b"x" * 5000, 413, "over the limit"),
        ("/api/scribble?case=case000", b"[" * 2000 + b"]" * 2000, 400, "malformed JSON"),
        (
            "/api/scribble?case=case000",
            {"strokes": [{"value": 1, "voxels": [0, 0, 10**30]}]},
            400,
            "far outside the image",
        ),
        ("/api/nothing", {}, 404, "no such API"),
        ("/api/train", {"preset": "no-such-preset"}, 422, "unknown preset"),
        ("/api/train", {"preset": "demo", "settings": "stage1.bogus=3"}, 422, "bogus"),
        ("/api/train", {"preset": "demo", "settings": "rm -rf /"}, 422, "section.field=value"),
        ("/api/train", {"preset": ""}, 422, "choose a preset"),
        # Planned presets: their settings are checked before the plan exists.
        ("/api/train", {"preset": "word-cpu", "settings": "stage1.bogus=3"}, 422, "bogus"),
        ("/api/train", {"preset": "auto", "settings": "stage1.lr=x"}, 422, "lr"),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(
    tiny_dataset, serve, path, body, status, message
):
    before = snapshot(tiny_dataset)
    _, client = serve(tiny_dataset, max_body=4096)
    got, _, reply = client.request("POST", path, body)
    assert got == status
    assert message in json.loads(reply)["error"]
    assert snapshot(tiny_dataset) == before
    assert not (tiny_dataset.parent / "runs").exists()
    status, _, _ = client.request("GET", "/api/info")  # still serving
    assert status == 200


def test_slice_requests_out_of_range(tiny_dataset, serve):
    _, client = serve(tiny_dataset)
    for query, message in (
        ("case=case000&plane=axial&index=3", "outside 0..2"),
        ("case=case000&plane=sideways&index=0", "unknown plane"),
        ("case=case000&layer=secret&index=0", "unknown layer"),
        ("case=case000&index=x", "must be int"),
        ("case=case000&layer=prediction&index=0", "no model"),
        ("case=/etc/passwd&index=0", "no case"),
    ):
        status, reply = client.json("GET", "/api/slice?" + query)
        assert status in (400, 404, 409) and message in reply["error"], query


def test_model_in_the_loop(tiny_dataset, tiny_model, serve):
    erase_slices(tiny_dataset, "case002", [0, 2])
    _, client = serve(tiny_dataset, model=tiny_model)
    status, info = client.json("GET", "/api/info")
    assert info["model"]["path"] == str(tiny_model)
    for layer in ("prediction", "uncertainty"):
        status, headers, body = client.request(
            "GET", f"/api/slice?case=case002&layer={layer}&plane=sagittal&index=4"
        )
        assert status == 200 and headers["X-Shape"] == "3,32" and len(body) == 96
    status, ranked = client.json("GET", "/api/suggest?unit=slice&top=5")
    assert [(s["case"], s["slice"]) for s in ranked["suggestions"]] in (
        [("case002", 0), ("case002", 2)],
        [("case002", 2), ("case002", 0)],
    )
    status, again = client.json("GET", "/api/suggest?unit=slice&top=5")
    assert again == ranked  # cached and deterministic
    status, ranked = client.json("GET", "/api/suggest?unit=case")
    assert ranked["suggestions"] == []  # every training case holds some scribble


def test_events_stream(tiny_dataset, serve):
    server, client = serve(tiny_dataset)
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.request("GET", "/api/events", headers={"X-Dmsps-Token": client.token})
    reply = conn.getresponse()
    assert reply.status == 200 and reply.getheader("Content-Type") == "text/event-stream"

    def next_event(kind):
        while True:
            line = reply.fp.readline().decode().strip()
            if line == f"event: {kind}":
                return json.loads(reply.fp.readline().decode()[len("data: ") :])

    assert next_event("hello") == {"job": None, "model": None}
    stroke = {"value": 0, "voxels": [1, 1, 1]}
    _, saved = client.json("POST", "/api/scribble?case=case003", {"strokes": [stroke]})
    event = next_event("case")
    while event != {"name": "case003", "status": saved["status"]}:
        event = next_event("case")  # the background status pass may come first
    conn.close()

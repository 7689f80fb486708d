"""Fixtures of the annotation tests: a tiny trained model, and a server on loopback that
stops by itself at the end of each test."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_tiny_dataset
from tests.support import train_tiny


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2D model trained for two iterations on the tiny dataset (a second or two)."""
    root = tmp_path_factory.mktemp("annotate-model")
    return train_tiny(make_tiny_dataset(root / "data"), root / "train")


def erase_slices(dataset: Path, case: str, slices) -> None:
    """Make slices of a case's scribble unannotated (the tiny data scribbles them all)."""
    from dmsps.data.layout import Dataset
    from dmsps.io.nifti import load_volume, save_volume

    ds = Dataset(dataset)
    path = ds.paths(case).scribble
    scribble, geom = load_volume(path, np.float32)
    scribble[list(slices)] = ds.meta.ignore_value
    save_volume(path, scribble, geom, np.uint8)


class Client:
    """HTTP calls to a test server, with or without the token; bounded in time."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token

    def request(self, method, path, body=None, token=True, headers=None, timeout=30):
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if token:
            req.add_header("X-Dmsps-Token", self.token)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, method, path, body=None, **kw):
        status, _, raw = self.request(method, path, body, **kw)
        return status, json.loads(raw) if raw else None


@pytest.fixture
def serve():
    """``serve(dataset, model=None, **app_options) -> (server, Client)``; every server
    made is shut down when the test ends."""
    from dmsps.annotate.server import App, make_server, serve_in_thread
    from dmsps.annotate.workspace import Workspace

    started = []

    def start(dataset: Path, model=None, runs: Path | None = None, cache_bytes=1 << 28, **kw):
        workspace = Workspace(dataset, cache_bytes, model, device="cpu")
        runs = runs or Path(dataset).parent / "runs"
        app = App(workspace, runs, **kw)
        server = make_server(app, "127.0.0.1", 0)
        thread = serve_in_thread(server)
        started.append((server, thread))
        app.start_background()
        host, port = server.server_address[:2]
        return server, Client(f"http://{host}:{port}", app.token)

    yield start
    for server, thread in started:
        server.app.close()
        server.shutdown()
        server.server_close()
        thread.join(5)

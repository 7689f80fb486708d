"""The HTTP server behind `dmsps annotate`: standard library only.

``http.server.ThreadingHTTPServer`` serves one thread per connection; progress reaches
the page as Server-Sent Events (one long response per page). Why not an ASGI stack
(Starlette with uvicorn): the server has one user, a handful of connections, and its
work (reading NIfTI, running the model) blocks, so an event loop would hand it to threads
anyway; the standard library adds no dependency, nothing to pin and nothing that can
fetch code. docs/annotate.md says more.

Security: the server listens on 127.0.0.1 unless told otherwise and answers nothing
without the access token printed at start: the first page load carries it in the URL
(``/?token=...``), which is swapped for an HttpOnly, SameSite=Strict cookie; the page
sends it again in the ``X-Dmsps-Token`` header, which every POST must carry (a page of
another site can neither read the cookie's value nor set that header). Names from
requests are never turned into paths unless they are known cases; request bodies have a
size limit; every asset ships in the package, and a Content-Security-Policy forbids the
page to load anything from elsewhere.
"""

from __future__ import annotations

import contextlib
import gzip
import hmac
import json
import secrets
import sys
import threading
import traceback
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from dmsps import __version__
from dmsps.annotate.jobs import EventBus, JobManager, preset_names
from dmsps.annotate.workspace import RequestError, Workspace
from dmsps.errors import DmspsError

#: The page's files, read from the package at start (no file is served by a request path).
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}

#: Default limit of a request body (a save of strokes); larger ones are refused unread.
MAX_BODY = 32 << 20

#: Class colours (background first), as the page draws them.
PALETTE = [
    "#4fc3f7",
    "#e53935",
    "#43a047",
    "#fdd835",
    "#8e24aa",
    "#fb8c00",
    "#00897b",
    "#d81b60",
    "#6d4c41",
    "#3949ab",
    "#c0ca33",
    "#5e35b1",
    "#f06292",
    "#26a69a",
    "#ffb300",
    "#7cb342",
]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def class_colour(value: int) -> str:
    if value < len(PALETTE):
        return PALETTE[value]
    hue = (value * 137.508) % 360  # golden-angle hues beyond the palette
    import colorsys

    r, g, b = colorsys.hls_to_rgb(hue / 360, 0.55, 0.7)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def default_preset(workspace: Workspace) -> str:
    """The preset the page offers first: ``acdc`` for stacks of 2D slices (one slice, or
    slices at least three times thicker than the in-plane pixels, as cine-MRI), else
    none: for volumes the user picks (the page lists the presets)."""
    if workspace.predictor is not None and workspace.model_info()["spatial_dims"] == 2:
        return "acdc"
    geom = workspace.geometry(workspace.cases[0])
    sz, sy, sx = geom.spacing
    if geom.shape[0] == 1 or sz >= 3 * max(sy, sx):
        return "acdc"
    return ""


class App:
    """What the handlers share: the workspace, the job manager, the events, the token."""

    def __init__(
        self,
        workspace: Workspace,
        runs_root: Path,
        token: str | None = None,
        max_body: int = MAX_BODY,
        verbose: bool = False,
    ) -> None:
        self.workspace = workspace
        self.token = token or secrets.token_urlsafe(24)
        self.max_body = max_body
        self.verbose = verbose
        self.events = EventBus()
        self.stopping = threading.Event()
        self.port = 0
        self.jobs = JobManager(
            workspace.root,
            runs_root,
            self.events,
            self._training_scribbles,
            self._load_trained,
        )
        self.static = {
            route: (resources.files("dmsps.annotate").joinpath("static", name).read_bytes(), ctype)
            for route, (name, ctype) in STATIC.items()
        }
        page, ctype = self.static["/"]
        self.static["/"] = (page.replace(b"{{TOKEN}}", self.token.encode()), ctype)
        self._suggest_lock = threading.Lock()
        self._status_thread = threading.Thread(
            target=self._compute_statuses, name="dmsps-status", daemon=True
        )

    def start_background(self) -> None:
        self._status_thread.start()

    def _compute_statuses(self) -> None:
        """Annotation status of every case, in the background, one file at a time."""
        for case in self.workspace.cases:
            if self.stopping.is_set():
                return
            if self.workspace.cached_status(case) is not None:
                continue
            try:
                status = self.workspace.status(case)
            except DmspsError as exc:
                self.events.publish("case", {"name": case, "error": str(exc)})
                continue
            self.events.publish("case", {"name": case, "status": status})

    def _training_scribbles(self) -> list[tuple[str, Path | None]]:
        ws = self.workspace
        return [(c, ws.ds.paths(c).scribble) for c in ws.train_cases()]

    def _load_trained(self, run_dir: Path) -> None:
        self.workspace.set_model(run_dir)
        self.events.publish("model", self.workspace.model_info() or {})

    def info(self) -> dict:
        ws = self.workspace
        classes = [
            {"value": v, "name": n, "colour": class_colour(v)} for v, n in enumerate(ws.class_names)
        ]
        return {
            "version": __version__,
            "dataset": ws.ds.meta.name,
            "root": str(ws.root),
            "classes": classes,
            "ignore": ws.ignore,
            "channels": ws.ds.meta.channel_names,
            "model": ws.model_info(),
            "presets": preset_names(),
            "default_preset": default_preset(ws),
            "runs": str(self.jobs.runs_root),
            "job": self.jobs.status(),
        }

    def close(self) -> None:
        self.stopping.set()
        self.jobs.close()


class AnnotateServer(ThreadingHTTPServer):
    daemon_threads = True  # a page left open never keeps the process alive
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        super().__init__(address, Handler)
        app.port = self.server_address[1]

    def handle_error(self, request, client_address) -> None:
        if self.app.verbose:
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    server: AnnotateServer
    protocol_version = "HTTP/1.1"
    timeout = 120  # a client that stops sending mid-request frees its thread
    server_version = f"dmsps-annotate/{__version__}"
    sys_version = ""

    @property
    def app(self) -> App:
        return self.server.app

    def log_message(self, format: str, *args) -> None:
        if self.app.verbose:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # --- responses -------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str,
        headers: dict | None = None,
        compress: bool = False,
    ) -> None:
        if compress and len(body) > 1024 and "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=1, mtime=0)
            headers = dict(headers or {}, **{"Content-Encoding": "gzip"})
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", compress=True)

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    # --- access ----------------------------------------------------------------------
    @property
    def _cookie_name(self) -> str:
        return f"dmsps_token_{self.app.port}"

    def _given_tokens(self, query: dict) -> list[str]:
        tokens = []
        if header := self.headers.get("X-Dmsps-Token"):
            tokens.append(header)
        if raw := self.headers.get("Cookie"):
            try:
                jar = SimpleCookie(raw)
                if self._cookie_name in jar:
                    tokens.append(jar[self._cookie_name].value)
            except Exception:
                pass
        tokens += query.get("token", [])
        return tokens

    def _authorised(self, query: dict, header_only: bool = False) -> bool:
        expected = self.app.token.encode()
        if header_only:
            given = [self.headers.get("X-Dmsps-Token", "")]
        else:
            given = self._given_tokens(query)
        return any(hmac.compare_digest(t.encode(), expected) for t in given)

    # --- dispatch --------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if url.path == "/" and "token" in query:
                if not self._authorised(query):
                    return self._error(403, "wrong access token")
                cookie = f"{self._cookie_name}={self.app.token}; Path=/; HttpOnly; SameSite=Strict"
                self.send_response(303)
                self.send_header("Location", "/")
                self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", "0")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                return None
            if not self._authorised(query):
                return self._error(
                    403,
                    "access token missing or wrong: open the URL that `dmsps annotate` printed "
                    "(it ends in ?token=...)",
                )
            if url.path in self.app.static:
                body, ctype = self.app.static[url.path]
                return self._send(200, body, ctype, {"Content-Security-Policy": CSP}, compress=True)
            route = GET_ROUTES.get(url.path)
            if route is None:
                return self._error(404, f"no such page or API: {url.path[:80]}")
            return route(self, query)
        except RequestError as exc:
            return self._error(exc.status, str(exc))
        except DmspsError as exc:
            return self._error(422, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as exc:
            return self._internal(exc)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if not self._authorised(query, header_only=True):
                self.close_connection = True
                return self._error(
                    403, "access token missing or wrong (POST requests carry X-Dmsps-Token)"
                )
            route = POST_ROUTES.get(url.path)
            if route is None:
                self.close_connection = True
                return self._error(404, f"no such API: {url.path[:80]}")
            body = self._read_body()
            if body is None:
                return None
            try:
                payload = json.loads(body) if body else {}
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                why = getattr(exc, "msg", None) or getattr(exc, "reason", "not UTF-8")
                raise RequestError(f"malformed JSON in the request body ({why})") from None
            except RecursionError:
                raise RequestError(
                    "malformed JSON in the request body (nested too deeply)"
                ) from None
            return route(self, query, payload)
        except RequestError as exc:
            return self._error(exc.status, str(exc))
        except DmspsError as exc:
            return self._error(422, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as exc:
            return self._internal(exc)

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._error(411, "send the body with a Content-Length, not chunked")
            return None
        try:
            n = int(length) if length is not None else 0
        except ValueError:
            n = -1
        if n < 0:
            self.close_connection = True
            self._error(400, "bad Content-Length")
            return None
        if n > self.app.max_body:
            self.close_connection = True  # the body is left unread
            self._error(
                413,
                f"request body of {n / 2**20:.1f} MB is over the limit of "
                f"{self.app.max_body / 2**20:.0f} MB; save more often (fewer strokes at once)",
            )
            return None
        return self.rfile.read(n) if n else b""

    def _internal(self, exc: Exception) -> None:
        traceback.print_exc(file=sys.stderr)
        with contextlib.suppress(OSError):
            self._error(500, f"internal error: {type(exc).__name__}: {str(exc)[:200]}")

    # --- routes ----------------------------------------------------------------------
    def _arg(self, query: dict, name: str, default=None, kind=str):
        values = query.get(name)
        if not values:
            if default is None:
                raise RequestError(f"missing parameter '{name}'")
            return default
        try:
            return kind(values[0])
        except ValueError:
            raise RequestError(f"parameter '{name}' must be {kind.__name__}") from None

    def get_info(self, query) -> None:
        self._json(self.app.info())

    def get_cases(self, query) -> None:
        ws = self.app.workspace
        self._json({"cases": [ws.case_entry(c) for c in ws.cases]})

    def get_case(self, query) -> None:
        ws = self.app.workspace
        case = ws.check_case(self._arg(query, "case"))
        item = ws.image(case)
        entry = ws.case_entry(case)
        entry["windows"] = item.windows
        entry["status"] = ws.status(case)
        entry["scribble_version"] = ws.scribble_version(case)
        self._json(entry)

    def get_slice(self, query) -> None:
        ws = self.app.workspace
        case = self._arg(query, "case")
        layer = self._arg(query, "layer", "image")
        plane = self._arg(query, "plane", "axial")
        index = self._arg(query, "index", kind=int)
        channel = self._arg(query, "channel", 0, int)
        data = ws.slice(case, layer, plane, index, channel)
        if data is None:
            return self._error(404, f"case '{case}' has no {layer}")
        headers = {"X-Shape": f"{data.shape[0]},{data.shape[1]}", "X-Dtype": data.dtype.name}
        return self._send(200, data.tobytes(), "application/octet-stream", headers, compress=True)

    def get_scribble(self, query) -> None:
        ws = self.app.workspace
        case = ws.check_case(self._arg(query, "case"))
        volume, version = ws.scribble_volume(case)
        shape = ",".join(str(s) for s in volume.shape)
        headers = {"X-Shape": shape, "X-Version": version, "X-Dtype": "uint8"}
        body = volume.astype(np.uint8, copy=False).tobytes()
        del volume
        return self._send(200, body, "application/octet-stream", headers, compress=True)

    def get_suggest(self, query) -> None:
        ws = self.app.workspace
        unit = self._arg(query, "unit", "slice")
        top = self._arg(query, "top", 20, int)

        def progress(done: int, total: int) -> None:
            self.app.events.publish("suggest", {"done": done, "total": total})

        with self.app._suggest_lock:
            ranking = ws.suggest(unit, top, on_case=progress)
        self._json({"unit": unit, "suggestions": [s.to_json() for s in ranking]})

    def get_job(self, query) -> None:
        self._json({"job": self.app.jobs.status()})

    def get_events(self, query) -> None:
        """Server-Sent Events until the page goes away or the server stops."""
        events = self.app.events
        q = events.subscribe()
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            hello = {"job": self.app.jobs.status(), "model": self.app.workspace.model_info()}
            self._event("hello", hello)
            idle = 0.0
            while not self.app.stopping.is_set():
                try:
                    kind, data = q.get(timeout=0.5)
                except Exception:
                    idle += 0.5
                    if idle >= 15:  # a comment keeps proxies and tunnels from timing out
                        self.wfile.write(b": keep-alive\n\n")
                        self.wfile.flush()
                        idle = 0.0
                    continue
                idle = 0.0
                self._event(kind, data)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass
        finally:
            events.unsubscribe(q)

    def _event(self, kind: str, data: dict) -> None:
        self.wfile.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def post_scribble(self, query, payload) -> None:
        ws = self.app.workspace
        case = self._arg(query, "case")
        result = ws.save_scribble(case, payload)
        self.app.events.publish("case", {"name": result["case"], "status": result["status"]})
        self._json(result)

    def post_train(self, query, payload) -> None:
        if not isinstance(payload, dict):
            raise RequestError('the body must be {"preset": NAME, "settings": "k=v ..."}')
        preset = payload.get("preset", "")
        if not isinstance(preset, str):
            raise RequestError("'preset' must be a preset name")
        status = self.app.jobs.start(preset.strip(), payload.get("settings"))
        self._json({"job": status})

    def post_cancel(self, query, payload) -> None:
        self._json({"job": self.app.jobs.cancel()})


GET_ROUTES = {
    "/api/info": Handler.get_info,
    "/api/cases": Handler.get_cases,
    "/api/case": Handler.get_case,
    "/api/slice": Handler.get_slice,
    "/api/scribble": Handler.get_scribble,
    "/api/suggest": Handler.get_suggest,
    "/api/job": Handler.get_job,
    "/api/events": Handler.get_events,
}

POST_ROUTES = {
    "/api/scribble": Handler.post_scribble,
    "/api/train": Handler.post_train,
    "/api/train/cancel": Handler.post_cancel,
}


def make_server(app: App, host: str = "127.0.0.1", port: int = 8765) -> AnnotateServer:
    """Bind the server (port 0: any free port); refuse a port in use with one line."""
    try:
        return AnnotateServer((host, port), app)
    except OSError as exc:
        import errno

        if exc.errno == errno.EADDRINUSE:
            raise DmspsError(
                f"port {port} on {host} is in use (another dmsps annotate?); pass --port with "
                "another number, or --port 0 for any free one"
            ) from None
        raise DmspsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve_in_thread(server: AnnotateServer) -> threading.Thread:
    """Serve from a daemon thread (tests); stop with ``server.shutdown()``."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    return thread


def url_of(server: AnnotateServer, with_token: bool = True) -> str:
    host, port = server.server_address[:2]
    shown = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
    if ":" in shown:
        shown = f"[{shown}]"
    base = f"http://{shown}:{port}/"
    return f"{base}?token={server.app.token}" if with_token else base

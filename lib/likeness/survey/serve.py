"""The collector: serves the survey page and stores each response (the one network-facing part).

* Binds to 127.0.0.1 unless told otherwise (put a TLS reverse proxy in front to go public).
* ``GET /`` serves the page; ``POST /responses`` takes one response; nothing else exists.
* A body must declare its length (411), be at most ``max_body`` bytes (413, the body is not
  read), be ``application/json`` (415), parse as JSON (400), and pass every check of
  :func:`likeness.survey.responses.validate_response` (422). A response id already stored is
  refused with 409 and the stored one is kept. In every one of these cases nothing is stored.
* Respondents are served concurrently (one thread each); the store is SQLite in WAL mode.
* Requests are logged one line each, without their bodies.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from likeness.survey import SurveyError
from likeness.survey.design import load_design
from likeness.survey.page import render_page
from likeness.survey.responses import DuplicateResponseError, ResponseError, ResponseStore

# A complete response of a survey of a few dozen stimuli is a few kB; 64 KiB leaves room for
# long designs and names while a flood of large bodies cannot fill the disk or the memory.
DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_HOST = "127.0.0.1"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data: blob:; "
                               "style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SurveyServer(ThreadingHTTPServer):
    """A threading HTTP server holding one survey's page and response store."""

    daemon_threads = True

    def __init__(self, survey_dir: str | Path, db_path: str | Path, *, host: str = DEFAULT_HOST,
                 port: int = 0, max_body: int = DEFAULT_MAX_BODY, quiet: bool = False):
        self.design = load_design(survey_dir)
        self.page = render_page(self.design, Path(survey_dir)).encode("utf-8")
        self.store = ResponseStore(db_path, self.design)
        self.max_body = max_body
        self.quiet = quiet
        try:
            super().__init__((host, port), SurveyHandler)
        except OSError as exc:
            raise SurveyError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another "
                              "--port or --host") from exc

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class SurveyHandler(BaseHTTPRequestHandler):
    server: SurveyServer
    server_version = "likeness-survey"
    sys_version = ""
    # A respondent that stops sending must not hold a thread for ever.
    timeout = 30

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data).encode("utf-8"), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message})

    def do_GET(self) -> None:
        if self.path in ("/", "/index.html", "/survey.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        else:
            self._error(HTTPStatus.NOT_FOUND, "not found")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if self.path != "/responses":
            self.close_connection = True
            return self._error(HTTPStatus.NOT_FOUND, "not found: responses go to /responses")
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            return self._error(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
        length_text = self.headers.get("Content-Length")
        try:
            length = int(length_text) if length_text is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if length > self.server.max_body:
            # Do not read it: refuse and close, so the body never reaches memory.
            self.close_connection = True
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"body of {length} bytes; at most {self.server.max_body}")
        body = self.rfile.read(length)
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                               "Content-Type must be application/json")
        try:
            response = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
        except (UnicodeDecodeError, ValueError) as exc:
            return self._error(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}")
        try:
            rid = self.server.store.add(response, f"web:{self.client_address[0]}")
        except ResponseError as exc:
            return self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
        except DuplicateResponseError as exc:
            return self._error(HTTPStatus.CONFLICT, str(exc))
        self._json(HTTPStatus.CREATED, {"stored": rid})

    def log_message(self, format: str, *args) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def start_server(survey_dir: str | Path, db_path: str | Path, **kwargs) -> SurveyServer:
    """Start a collector in a background thread (for tests and notebooks); stop it with
    ``server.shutdown(); server.server_close()``."""
    server = SurveyServer(survey_dir, db_path, **kwargs)
    threading.Thread(target=server.serve_forever, name="likeness-survey", daemon=True).start()
    return server


def serve(survey_dir: str | Path, db_path: str | Path, *, host: str = DEFAULT_HOST,
          port: int = 8000, max_body: int = DEFAULT_MAX_BODY) -> None:
    """Serve until interrupted (Ctrl-C)."""
    server = SurveyServer(survey_dir, db_path, host=host, port=port, max_body=max_body)
    print(f"survey {server.design['survey_id']} at {server.url} ; responses in {db_path}",
          flush=True)

    def stop(signum, frame) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and a service manager's SIGTERM both stop it cleanly (SIGINT is set explicitly:
    # a shell starts background jobs with it ignored). Every stored response is committed.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()

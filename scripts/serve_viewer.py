"""Serve the reference viewer: a tiny static server, loopback only by default.

    /                 -> viewer/index.html
    /<file>           -> viewer/<file>
    /vendor/<file>    -> node_modules/livekit-client/dist/<file>

Only regular files directly inside those two folders are served: no listings, no subfolders, no
``..``. Usage: ``python scripts/serve_viewer.py [--host 127.0.0.1] [--port 8000]``; ``--port 0``
picks a free port. The first line on stdout is the viewer's URL.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
VIEWER_DIR = REPO_ROOT / "viewer"
VENDOR_DIR = REPO_ROOT / "node_modules" / "livekit-client" / "dist"
VENDOR_PREFIX = "/vendor/"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.DOTALL)


def import_map_hash(html: str) -> str:
    """The CSP source of index.html's inline import map: 'sha256-<base64>' of its exact text."""
    found = IMPORT_MAP.search(html)
    if found is None:
        raise ValueError("viewer/index.html has no <script type=\"importmap\">")
    digest = hashlib.sha256(found.group(1).encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def content_security_policy(html: str) -> str:
    """The page talks to the LiveKit server (any ws/wss/http/https origin, given at run time) and
    to nothing else; the E2EE worker is a same-origin module; the only inline script is the import
    map, allowed by its hash (an import map cannot be an external file in Chromium)."""
    return (
        f"default-src 'self'; script-src 'self' {import_map_hash(html)}; worker-src 'self'; "
        "style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
        "connect-src 'self' ws: wss: http: https:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    )


def resolve(url_path: str) -> Path | None:
    """The file a request path maps to, or None when it maps to nothing we serve."""
    path = unquote(urlsplit(url_path).path)
    if path == "/":
        return VIEWER_DIR / "index.html"
    if path.startswith(VENDOR_PREFIX):
        folder, name = VENDOR_DIR, path[len(VENDOR_PREFIX):]
    else:
        folder, name = VIEWER_DIR, path[1:]
    # One plain file name: no separators, no dot-files, no "..".
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        return None
    candidate = folder / name
    if candidate.suffix not in MIME_TYPES or not candidate.is_file():
        return None
    return candidate


class ViewerHandler(BaseHTTPRequestHandler):
    server_version = "serve_viewer"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve(with_body=True)

    def do_HEAD(self) -> None:
        self._serve(with_body=False)

    def _serve(self, *, with_body: bool) -> None:
        file = resolve(self.path)
        if file is None:
            self.send_error(HTTPStatus.NOT_FOUND, "Not found")
            return
        body = file.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", MIME_TYPES[file.suffix])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", content_security_policy(
            (VIEWER_DIR / "index.html").read_text(encoding="utf-8")))
        # The query string may carry a token: never hand it on in a Referer.
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_error(self, format: str, *args: object) -> None:
        pass  # send_error() also logs the request line below; once is enough

    def log_message(self, format: str, *args: object) -> None:
        # The default logs the request line, query string (and token) included. Log the path only.
        path = urlsplit(self.path).path
        sys.stderr.write(f"{self.address_string()} {self.command} {path}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("port_arg", nargs="?", type=int, help="same as --port")
    args = parser.parse_args(argv)
    port = args.port_arg if args.port_arg is not None else args.port

    if not (VENDOR_DIR / "livekit-client.esm.mjs").is_file():
        sys.exit(f"serve_viewer: {VENDOR_DIR} has no livekit-client.esm.mjs; run `npm ci` "
                 "(scripts/setup.sh does)")

    server = ThreadingHTTPServer((args.host, port), ViewerHandler)
    server.daemon_threads = True
    host, bound_port = server.server_address[:2]
    if isinstance(host, bytes):  # AF_UNIX only; typeshed allows it
        host = host.decode()
    print(f"http://{host}:{bound_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

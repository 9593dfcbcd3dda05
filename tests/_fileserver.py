"""A file server on 127.0.0.1 for download tests: serves in-memory files, counts requests
and can cut a response short (full Content-Length, half the body, then close)."""

from __future__ import annotations

import http.server
import threading
from collections import Counter


class FileServer:
    """``with FileServer({"/a.bin": b"..."}) as srv: srv.url("/a.bin")``; ``srv.hits["/a.bin"]``.

    ``truncate`` holds paths whose body is cut after half its bytes (the header announces
    the full length, as when a connection drops mid-download)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.truncate: set[str] = set()
        self.hits: Counter = Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits[self.path] += 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.truncate:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

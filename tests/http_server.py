"""Local HTTP servers on 127.0.0.1: the base every test server uses (:class:`QuietHTTPServer`), and the
download tests' server (Range requests, and cut connections on demand)."""

import ssl
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHTTPServer(ThreadingHTTPServer):
    """The tests' HTTP servers: a handler's error is one line on stderr (the error and where it was
    raised), never a formatted traceback, and a client that hung up (a test's timeout, a cut
    connection) is no error at all. Why: a handler thread can outlive its test, and CPython 3.11
    formats a traceback with ``ast.parse`` (its ``^^^`` markers), whose AST constructor's recursion
    counter is shared by the interpreter's threads: a traceback printed while a test parsed source in
    the main thread failed that test with "SystemError: AST constructor recursion depth mismatch" (the
    same error in threaded code: pytest-dev/pytest#10763)."""

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, ssl.SSLEOFError)):
            return
        where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None  # no ast.parse
        at = f" at {where.filename}:{where.lineno}" if where else ""
        print(f"test server {self.server_address}: handler error {error!r}{at}", file=sys.stderr)


class Server:
    """Serves ``files``; the first ``cuts`` responses stop after ``cut_at`` bytes (a cut connection)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cuts = 0
        self.cut_at = 0
        self.cut_only: str | None = None  # cut only responses for this path
        self.ranges: list[str | None] = []
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                server.paths.append(self.path)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(data):
                    self.send_error(416)
                    return
                body = data[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cuts > 0 and server.cut_only in (None, self.path):
                    server.cuts -= 1
                    self.wfile.write(body[: server.cut_at])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection is cut mid-file
                    return
                self.wfile.write(body)

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

"""An HTTP server that answers every request with a 307 to the same path
plus a trailing slash, as an MCP server mounted at `/mcp/` answers `/mcp`.

    redirect.py PORT
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Redirect(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self):
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.send_response(307)
        self.send_header("location", self.path + "/")
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_POST = do_DELETE = answer


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Redirect).serve_forever()

"""A proxy in front of an MCP server on streamable HTTP that never answers
the MCP 2026-07-28 probe (`server/discover`), as a server that ignores
methods it does not know: the gateway must fall back to the `initialize`
handshake. Everything else is forwarded; a GET (the legacy event stream)
is answered 405, which clients accept.

    nodiscover.py PORT TARGET_URL
"""

import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, target = int(sys.argv[1]), sys.argv[2]


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(405)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_DELETE(self):
        self.forward(b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if b"server/discover" in body:
            time.sleep(60)  # far past the tests' bound; ends by itself
            return
        self.forward(body)

    def forward(self, body):
        req = urllib.request.Request(
            target, data=body if self.command == "POST" else None, method=self.command
        )
        for k in ("content-type", "accept", "mcp-session-id", "mcp-protocol-version"):
            if self.headers.get(k):
                req.add_header(k, self.headers[k])
        try:
            r = urllib.request.urlopen(req, timeout=30)
            code, headers, data = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            code, headers, data = e.code, e.headers, e.read()
        self.send_response(code)
        for k in ("content-type", "mcp-session-id"):
            if headers.get(k):
                self.send_header(k, headers[k])
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()

#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of an S3-compatible server, for Thaw's fault tests.

    s3-fault-proxy.py --upstream http://127.0.0.1:PORT --port PORT

Every request is forwarded to the upstream unchanged (method, path, query, headers, body) and
the upstream's answer is returned, except while a fault is armed:

    POST /__fault?status=500&count=N      answer the next N requests with that status
    POST /__fault?status=503&seconds=S    answer every request for S seconds with that status
    POST /__fault?clear=1                 disarm
    GET  /__stats                         JSON: requests forwarded, faults served, by method

503 faults carry S3's SlowDown error document, 500 faults InternalError.
"""

import argparse
import http.client
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.status = None
        self.count = 0
        self.until = 0.0
        self.forwarded = {}
        self.faults = 0

    def take_fault(self):
        with self.lock:
            if self.status is None:
                return None
            if self.count > 0:
                self.count -= 1
                status = self.status
                if self.count == 0 and self.until == 0.0:
                    self.status = None
                self.faults += 1
                return status
            if time.monotonic() < self.until:
                self.faults += 1
                return self.status
            self.status = None
            return None


def make_handler(upstream, state):
    target = urllib.parse.urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reply(self, status, body, content_type="application/xml"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _control(self):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            self._body()
            if self.path.startswith("/__stats"):
                with state.lock:
                    payload = {"forwarded": state.forwarded, "faults": state.faults}
                self._reply(200, json.dumps(payload).encode(), "application/json")
                return
            with state.lock:
                if "clear" in query:
                    state.status, state.count, state.until = None, 0, 0.0
                else:
                    state.status = int(query.get("status", ["500"])[0])
                    state.count = int(query.get("count", ["0"])[0])
                    seconds = float(query.get("seconds", ["0"])[0])
                    state.until = time.monotonic() + seconds if seconds else 0.0
            self._reply(200, b"{}", "application/json")

        def _handle(self):
            if self.path.startswith("/__fault") or self.path.startswith("/__stats"):
                self._control()
                return
            body = self._body()
            status = state.take_fault()
            if status is not None:
                code = "SlowDown" if status == 503 else "InternalError"
                document = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected fault</Message></Error>"
                self._reply(status, document.encode())
                return
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            with state.lock:
                state.forwarded[self.command] = state.forwarded.get(self.command, 0) + 1
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", arguments.port), make_handler(arguments.upstream, State()))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

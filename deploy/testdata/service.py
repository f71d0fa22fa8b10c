#!/usr/bin/env python3
"""A tiny deploy target for pipe's deploy tests and examples.

Serves `/` ("hello from VERSION"), `/healthz` and `/readyz` (health probes), `/metrics`
(Prometheus text format: request counters by status, build info) and `/slow`.

Behaviour is set by flags and, when `--control FILE` is given, re-read from that JSON file on
every request, so a test can change it while the service runs:
  {"health": 200, "ready": 200, "delay": 0.0, "errors": 0, "flap": false}
`errors` adds that many 500s to the metrics; `flap` alternates /healthz between 200 and 503.
"""
import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--version", default="dev")
p.add_argument("--health", type=int, default=200)
p.add_argument("--errors", type=int, default=0)
p.add_argument("--control")
p.add_argument("--pidfile")
args = p.parse_args()

lock = threading.Lock()
counts = {"200": 0, "500": 0}
flaps = [0]


def control():
    c = {"health": args.health, "ready": 200, "delay": 0.0, "errors": args.errors, "flap": False}
    if args.control:
        try:
            with open(args.control) as f:
                c.update(json.load(f))
        except (OSError, ValueError):
            pass
    return c


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Version", args.version)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        c = control()
        path = self.path.split("?")[0]
        if path == "/healthz":
            code = c["health"]
            if c["flap"]:
                with lock:
                    flaps[0] += 1
                    code = 200 if flaps[0] % 2 else 503
            self.send(code, "ok\n" if code == 200 else "unhealthy\n")
        elif path == "/readyz":
            self.send(c["ready"], "ready\n" if c["ready"] == 200 else "not ready\n")
        elif path == "/metrics":
            with lock:
                ok, err = counts["200"], counts["500"] + int(c["errors"])
            body = (
                "# HELP http_requests_total Requests served.\n"
                "# TYPE http_requests_total counter\n"
                f'http_requests_total{{code="200"}} {ok}\n'
                f'http_requests_total{{code="500"}} {err}\n'
                "# TYPE app_build_info gauge\n"
                f'app_build_info{{version="{args.version}"}} 1\n'
            )
            self.send(200, body, "text/plain; version=0.0.4")
        elif path == "/slow":
            import time
            time.sleep(float(c["delay"]))
            self.send(200, "slow\n")
        else:
            with lock:
                counts["200"] += 1
            self.send(200, f"hello from {args.version}\n")


srv = ThreadingHTTPServer(("127.0.0.1", args.port), H)
srv.daemon_threads = True
if args.pidfile:
    with open(args.pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(args.pidfile + ".tmp", args.pidfile)
signal.signal(signal.SIGTERM, lambda *a: (srv.server_close(), sys.exit(0)))
srv.serve_forever()

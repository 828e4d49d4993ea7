"""A stand-in for Triton run as a pod's server process: it answers the OIP readiness checks.

``--mode ticks`` prints 200 boot lines, then a numbered tick every 50 ms (a real process
writing its real log file). ``--mode hold``: an inference call logs that it began and is
held until the file named by $HOLD_FILE (from the revision's env) exists, 20 s at most.
Flags a pod command gets from deploy-control are accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

parser = argparse.ArgumentParser()
parser.add_argument("--name")
parser.add_argument("--http-port", type=int, required=True)
parser.add_argument("--mode", choices=("ticks", "hold"), required=True)
args, _unknown = parser.parse_known_args()
READY = ("/v2/health/ready", "/v2/health/live", f"/v2/models/{args.name}/ready")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path in READY else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        if args.mode != "hold":
            self.send_error(501)
            return
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        print("infer started", flush=True)
        deadline = time.monotonic() + 20
        while not os.path.exists(os.environ["HOLD_FILE"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        body = json.dumps({"outputs": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", args.http_port), Handler)
if args.mode == "hold":
    server.serve_forever()
for i in range(200):
    print(f"boot {i}", flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
i = 0
while True:
    print(f"tick {i}", flush=True)
    i += 1
    time.sleep(0.05)

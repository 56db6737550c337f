"""Child processes the supervisor tests run: each mode is one behaviour a real service has.

python children.py serve PORT [--delay-s S]   HTTP 200 on every GET, listening only after S s
python children.py crash [--after-s S]        one line, then exit 3
python children.py stubborn                    ignores SIGTERM (needs SIGKILL)
python children.py parent PIDFILE              spawns a sleeping grandchild, writes its pid
python children.py chatty                      logs lines at several levels, then idles
"""

from __future__ import annotations

import argparse
import http.server
import json
import signal
import subprocess
import sys
import time


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        print("GET", self.path, flush=True)


def serve(port: int, delay_s: float) -> None:
    print(f"warming up for {delay_s} s", flush=True)
    time.sleep(delay_s)
    server = http.server.HTTPServer(("127.0.0.1", port), _Ok)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on {port}", flush=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    modes = parser.add_subparsers(dest="mode", required=True)
    serve_mode = modes.add_parser("serve")
    serve_mode.add_argument("port", type=int)
    serve_mode.add_argument("--delay-s", type=float, default=0.0)
    crash = modes.add_parser("crash")
    crash.add_argument("--after-s", type=float, default=0.0)
    modes.add_parser("stubborn")
    parent = modes.add_parser("parent")
    parent.add_argument("pidfile")
    modes.add_parser("chatty")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.port, args.delay_s)
    elif args.mode == "crash":
        time.sleep(args.after_s)
        print("Traceback (most recent call last): boom", flush=True)
        sys.exit(3)
    elif args.mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(600)
    elif args.mode == "parent":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(args.pidfile, "w") as handle:
            handle.write(str(child.pid))
        print("spawned", child.pid, flush=True)
        time.sleep(600)
    else:
        print(json.dumps({"event": "model_loaded", "level": "info"}), flush=True)
        print("WARNING: low VRAM", file=sys.stderr, flush=True)
        print(json.dumps({"event": "oom", "level": "error"}), flush=True)
        print("plain line", flush=True)
        time.sleep(600)


if __name__ == "__main__":
    main()

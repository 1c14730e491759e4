#!/usr/bin/env python3
"""The entrypoint of a version's SageMaker variant: a Cog image answering SageMaker's inference contract.

SageMaker starts an inference container as `docker run <image> serve` and talks to it on port
8080 (`GET /ping`, `POST /invocations`); a Cog image serves `/health-check` and `/predictions`
on its own port instead, and CreateModel takes no entrypoint override. The variant's one extra
layer is this file and the entrypoint that runs it:

1. starts the image's own Cog server ($DREAMBOOTH_COG_COMMAND, default `python -m cog.server.http`)
   on a free port, given as env PORT (the only way Cog's server takes its port), and talks to
   it over loopback;
2. listens on 0.0.0.0:8080 ($DREAMBOOTH_SERVE_HOST and $DREAMBOOTH_SERVE_PORT override them, for
   local mode's containers, which share the host's network, and tests; SageMaker sets neither);
3. `GET /ping`: 200 once Cog's `/health-check` has said READY (BUSY too: a prediction is
   running), 503 with a JSON `detail` before; SETUP_FAILED or DEFUNCT: 503 with the setup's
   logs as `detail` for a few seconds, then exits 1 (the endpoint fails now rather than when
   SageMaker's startup health check gives up);
4. `POST /invocations` with `{"input": {...}, "id"?: "..."}` (the asynchronous request the
   service writes to S3): Cog's synchronous `POST /predictions`, one at a time; answers 200
   with Cog's prediction (`status`, `output` with files as data: URIs, `logs`, `error`,
   `metrics`), a model's own failure included (`status: failed` and its `error`). Failures of
   the adapter or of the Cog server are 4xx/5xx with a JSON `detail`: 400 a body that is not
   such JSON, 422 Cog's validation detail, 503 not ready, 502 Cog's server failed or exited;
5. logs to stdout each prediction's id, status and time, never its input (prompts and URLs may
   be secrets). SIGTERM stops Cog and exits 0. If Cog's server exits, the adapter exits 1.

Standard library only: Cog images carry Python but nothing else can be assumed.
"""
import http.server
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

COG_COMMAND = os.environ.get("DREAMBOOTH_COG_COMMAND", "python -m cog.server.http")
SERVE_HOST = os.environ.get("DREAMBOOTH_SERVE_HOST") or "0.0.0.0"
SERVE_PORT = int(os.environ.get("DREAMBOOTH_SERVE_PORT") or 8080)
# SageMaker's ping times out after 2 s: /ping answers from what the watcher last saw.
WATCH_EVERY_SECONDS = 0.25
HEALTH_TIMEOUT_SECONDS = 5
# Long enough for a reader of /ping (a local stand-in, a person) to see why setup failed.
SETUP_FAILED_GRACE_SECONDS = 5
# Asynchronous inference allows a request up to an hour; a synchronous Cog call sends nothing until done.
PREDICTION_TIMEOUT_SECONDS = 3600 + 60
# SageMaker sends SIGKILL 30 s after SIGTERM.
COG_STOP_SECONDS = 10
MAX_BODY_BYTES = 1024 ** 3
ACCEPTED_ARGS = ([], ["serve"])


class Refused(Exception):
    """An invocation the adapter answers itself, with this status and detail."""

    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def log(message):
    print("[dreambooth-serve] " + message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cog:
    """The image's own Cog server, and what its health check last said."""

    def __init__(self):
        self.port = free_port()
        self.process = None
        self.lock = threading.Lock()
        self.phase = "starting"  # starting | ready | failed
        self.reason = "the model is starting"
        # Cog runs one prediction at a time; a second request would get 409.
        self.busy = threading.Lock()

    def start(self, command):
        log("starting the Cog server: %s" % " ".join(command))
        self.process = subprocess.Popen(command, env=dict(os.environ, PORT=str(self.port)))

    def call(self, method, path, body=None, timeout=HEALTH_TIMEOUT_SECONDS):
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"content-type": "application/json"} if body is not None else {}
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                return res.status, res.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def health(self):
        try:
            status, body = self.call("GET", "/health-check")
            return json.loads(body.decode("utf-8")) if status == 200 else {}
        except (OSError, ValueError):
            return {}

    def state(self):
        with self.lock:
            return self.phase, self.reason

    def set_state(self, phase, reason):
        with self.lock:
            changed = self.phase != phase
            self.phase, self.reason = phase, reason
        if changed:
            log("%s: %s" % (phase, reason))

    def exited(self, wait=0):
        """The server's exit status, or None while it runs."""
        try:
            return self.process.wait(timeout=wait) if wait else self.process.poll()
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=COG_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def watch(cog, stopping):
    """Follows the Cog server until SIGTERM or its end; the adapter's exit status."""
    while not stopping.wait(WATCH_EVERY_SECONDS):
        code = cog.exited()
        if code is not None:
            cog.set_state("failed", "the Cog server exited with status %d" % code)
            # The prediction it was running gets its answer before the container goes.
            if cog.busy.acquire(timeout=COG_STOP_SECONDS):
                cog.busy.release()
            return 1
        health = cog.health()
        status = health.get("status")
        if status in ("READY", "BUSY"):
            cog.set_state("ready", "the Cog server is ready")
        elif status in ("SETUP_FAILED", "DEFUNCT"):
            logs = ((health.get("setup") or {}).get("logs") or "").strip()
            cog.set_state("failed", "the model's setup failed (%s): %s" % (status, logs[-800:] or "no logs"))
            stopping.wait(SETUP_FAILED_GRACE_SECONDS)
            return 1
    return 0


def parse_invocation(raw):
    try:
        request = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Refused(400, "the request body is not JSON: %s" % e)
    if not isinstance(request, dict) or not isinstance(request.get("input"), dict):
        raise Refused(400, 'the request body must be a JSON object with "input", an object')
    if request.get("id") is not None and not isinstance(request["id"], str):
        raise Refused(400, '"id" must be a string')
    return request


def invoke(cog, raw):
    """One invocation: (HTTP status, body bytes). Cog's prediction as it answered it, or a Refused."""
    request = parse_invocation(raw)
    body = {"input": request["input"]}
    if request.get("id"):
        body["id"] = request["id"]
    label = request.get("id") or "(no id)"
    with cog.busy:
        phase, reason = cog.state()
        if phase != "ready":
            raise Refused(503, reason)
        started = time.monotonic()
        try:
            status, answer = cog.call("POST", "/predictions", body, timeout=PREDICTION_TIMEOUT_SECONDS)
        except OSError as e:
            code = cog.exited(wait=2)
            if code is not None:
                raise Refused(502, "the Cog server exited with status %d during the prediction" % code)
            raise Refused(502, "the Cog server did not answer: %s" % getattr(e, "reason", e))
    seconds = time.monotonic() - started
    if status == 200:
        try:
            prediction = json.loads(answer.decode("utf-8"))
        except ValueError:
            raise Refused(502, "the Cog server answered 200 with something other than JSON")
        log("prediction %s: %s in %.2fs" % (label, prediction.get("status"), seconds))
        return 200, answer
    detail = cog_detail(answer)
    log("prediction %s: the Cog server answered %d" % (label, status))
    if status == 422:
        raise Refused(422, detail)
    raise Refused(502, "the Cog server answered %d: %s" % (status, json.dumps(detail)[:1000]))


def cog_detail(answer):
    try:
        return json.loads(answer.decode("utf-8")).get("detail")
    except (ValueError, AttributeError):
        return answer[:1000].decode("utf-8", "replace")


def handler_for(cog):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass  # SageMaker pings every few seconds; predictions are logged by id.

        def reply(self, status, body):
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.split("?")[0] != "/ping":
                return self.reply(404, {"detail": "Not Found"})
            phase, reason = cog.state()
            if phase == "ready":
                return self.reply(200, {"status": "ready"})
            self.reply(503, {"detail": reason})

        def do_POST(self):
            if self.path.split("?")[0] != "/invocations":
                self.close_connection = True  # its body stays unread
                return self.reply(404, {"detail": "Not Found"})
            try:
                status, body = invoke(cog, self.read_body())
            except Refused as e:
                status, body = e.status, {"detail": e.detail}
            self.reply(status, body)

        def read_body(self):
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            size = int(self.headers.get("content-length") or 0)
            if size > MAX_BODY_BYTES:
                self.close_connection = True
                raise Refused(413, "the request body is larger than 1 GB")
            return self.rfile.read(size)

    return Handler


def main(args):
    if args not in ACCEPTED_ARGS:
        log("usage: sagemaker_adapter.py [serve] (got %s)" % " ".join(args))
        return 2
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    cog = Cog()
    # Listening first: SageMaker expects the port to accept connections soon after the start.
    server = http.server.ThreadingHTTPServer((SERVE_HOST, SERVE_PORT), handler_for(cog))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("serving /ping and /invocations on %s:%d" % (SERVE_HOST, SERVE_PORT))
    try:
        cog.start(shlex.split(COG_COMMAND))
        log("Cog server pid %d on port %d" % (cog.process.pid, cog.port))
        code = watch(cog, stopping)
        log("stopping (SIGTERM)" if stopping.is_set() and code == 0 else "exiting with status %d" % code)
        return code
    finally:
        cog.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

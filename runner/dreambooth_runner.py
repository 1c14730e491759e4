#!/usr/bin/env python3
"""The entrypoint of a SageMaker training job that runs a Cog trainer image unchanged.

SageMaker would run `docker run <image> train`; the job overrides the entrypoint with this file
(delivered in the job's `request` input channel), which drives the image's own Cog server from
inside the container:

1. reads $DREAMBOOTH_ML_ROOT/input/data/request/request.json: {"input": {...}, "mode":
   "predict"|"train"|"auto", "id"?, "files"?}, and the training's callback URL from the job's
   environment ($DREAMBOOTH_CALLBACK_URL; never from the channel, which every job of the stack
   can read, while only this container sees its environment); file inputs are paths relative
   to $DREAMBOOTH_ML_ROOT/input/data (or URLs, passed on as they are); "auto" (or no mode)
   reads the image's own cog.yaml ($DREAMBOOTH_COG_CONFIG, default cog.yaml in the working
   directory, /src in a Cog image — the run.cog.config label holds the same): train mode when it
   names a `train:` function, predict mode otherwise;
2. serves those files on loopback and rewrites the inputs to their URLs (Cog's Path inputs
   accept only http(s) and data: URLs);
3. starts the Cog server ($DREAMBOOTH_COG_COMMAND, default `python -m cog.server.http`) with
   --upload-url pointing at itself (Cog 0.9 uploads file outputs only for async predictions),
   and --x-mode train in train mode;
4. waits for READY, starts the one prediction (or training) asynchronously with its webhook
   pointing at itself, prints the trainer's logs to stdout as they come, forwards progress to
   the training's callback URL (at most every 3 s), stores the uploaded output as
   $DREAMBOOTH_ML_ROOT/model/output.zip;
5. on failure writes the trainer's error to $DREAMBOOTH_ML_ROOT/output/failure (SageMaker's
   FailureReason) and exits non-zero. SIGTERM (a stopped job) cancels the run first.

Standard library only: Cog images carry Python but nothing else can be assumed.
"""
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ML_ROOT = os.environ.get("DREAMBOOTH_ML_ROOT", "/opt/ml")
COG_COMMAND = os.environ.get("DREAMBOOTH_COG_COMMAND", "python -m cog.server.http")
COG_CONFIG = os.environ.get("DREAMBOOTH_COG_CONFIG", "cog.yaml")
CALLBACK_URL = os.environ.get("DREAMBOOTH_CALLBACK_URL") or None
DATA_DIR = os.path.join(ML_ROOT, "input", "data")
MODEL_DIR = os.path.join(ML_ROOT, "model")
FAILURE_FILE = os.path.join(ML_ROOT, "output", "failure")
# SageMaker keeps the first 1024 characters of FailureReason.
FAILURE_MAX_CHARS = 1024
CALLBACK_EVERY_SECONDS = 3.0
TERMINAL = ("succeeded", "failed", "canceled")


class RunFailed(Exception):
    """A failure the training should show as its error."""


def log(message):
    print("[dreambooth-runner] " + message, flush=True)


def load_request():
    path = os.path.join(DATA_DIR, "request", "request.json")
    try:
        with open(path, encoding="utf-8") as f:
            request = json.load(f)
    except (OSError, ValueError) as e:
        raise RunFailed("cannot read the job's request %s: %s" % (path, e))
    if not isinstance(request.get("input"), dict):
        raise RunFailed("request.json: input must be a JSON object")
    if request.get("mode", "auto") not in ("predict", "train", "auto"):
        raise RunFailed('request.json: mode must be "predict", "train" or "auto"')
    request["mode"] = resolve_mode(request.get("mode", "auto"))
    return request


def resolve_mode(mode):
    """"auto": what the image's cog.yaml declares (a top-level `train:` key names a train function)."""
    if mode != "auto":
        return mode
    try:
        with open(COG_CONFIG, encoding="utf-8") as f:
            config = f.read()
    except OSError as e:
        log("no cog.yaml to choose the mode from (%s): predict mode" % e)
        return "predict"
    # A top-level key at the start of a line; a plain regex, as the standard library has no YAML.
    mode = "train" if re.search(r"^train\s*:\s*\S", config, re.M) else "predict"
    log("%s declares %s: %s mode" % (COG_CONFIG, "a train function" if mode == "train" else "no train function", mode))
    return mode


def local_file(value):
    """The file a relative path names inside the input data folder, or None."""
    if not isinstance(value, str) or not value or "://" in value or value.startswith("data:"):
        return None
    full = os.path.realpath(os.path.join(DATA_DIR, value))
    inside = full.startswith(os.path.realpath(DATA_DIR) + os.sep)
    return full if inside and os.path.isfile(full) else None


def rewrite_inputs(request, base_url):
    """Input files become loopback URLs; `files` names inputs that must be files."""
    inputs = dict(request["input"])
    for key in request.get("files", []):
        if local_file(inputs.get(key)) is None:
            raise RunFailed("input %s names %r, which the job's input data does not hold" % (key, inputs.get(key)))
    for key, value in inputs.items():
        if local_file(value):
            inputs[key] = base_url + "/inputs/" + urllib.parse.quote(value)
    return inputs


class Run:
    """What the runner's HTTP server and the main thread share."""

    def __init__(self, callback_url):
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.prediction = {}
        self.printed = 0
        self.uploads = []
        self.callback_url = callback_url
        self.callback_at = 0.0

    def update(self, prediction):
        with self.lock:
            logs = prediction.get("logs") or ""
            # Logs are cumulative and events may come out of order: keep the longest.
            if len(logs) >= len(self.prediction.get("logs") or ""):
                new, self.printed = logs[self.printed:], max(self.printed, len(logs))
                merged = dict(prediction)
            else:
                new, merged = "", dict(self.prediction, status=prediction.get("status"), output=prediction.get("output"), error=prediction.get("error"))
            if self.prediction.get("status") in TERMINAL:
                return
            self.prediction = merged
        if new:
            sys.stdout.write(new if new.endswith("\n") else new + "\n")
            sys.stdout.flush()
        if merged.get("status") in TERMINAL:
            self.done.set()
        else:
            self.report(force=False)

    def report(self, force):
        """Progress to the training's callback route; the job's end, not this, decides the outcome."""
        if not self.callback_url:
            return None
        now = time.monotonic()
        with self.lock:
            if not force and now - self.callback_at < CALLBACK_EVERY_SECONDS:
                return None
            self.callback_at = now
            body = {"id": self.prediction.get("id"), "status": "processing", "logs": self.prediction.get("logs") or ""}
        sender = threading.Thread(target=post_callback, args=(self.callback_url, body), daemon=True)
        sender.start()
        return sender


def post_callback(url, body):
    data = json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as res:
            res.read()
    except (urllib.error.URLError, OSError) as e:
        # Never the URL: it carries the training's callback secret.
        log("could not report progress to the training (%s); the run goes on" % getattr(e, "reason", e))


class RunnerHandler(http.server.BaseHTTPRequestHandler):
    """Serves Cog: the input files (GET), the output uploads (PUT), the prediction's webhook (POST)."""

    protocol_version = "HTTP/1.1"
    run = None  # the Run being served, set by handler_for

    def log_message(self, *args):
        pass  # Cog's requests to us are not the trainer's logs.

    def reply(self, status, body=b"{}"):
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        full = local_file(path[len("/inputs/"):]) if path.startswith("/inputs/") else None
        if not full:
            return self.reply(404, b'{"detail": "no such input file"}')
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(os.path.getsize(full)))
        self.end_headers()
        with open(full, "rb") as f:
            shutil.copyfileobj(f, self.wfile, 1024 * 1024)

    def do_PUT(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        name = os.path.basename(path)
        if not path.startswith("/upload/") or name in ("", ".", ".."):
            return self.reply(404, b'{"detail": "PUT files under /upload/"}')
        os.makedirs(MODEL_DIR, exist_ok=True)
        part = os.path.join(MODEL_DIR, "." + name + ".part")
        with open(part, "wb") as f:
            self.read_body(f)
        os.replace(part, os.path.join(MODEL_DIR, name))
        with self.run.lock:
            self.run.uploads.append(name)
        self.reply(201)

    def do_POST(self):
        if urllib.parse.urlsplit(self.path).path != "/webhook":
            return self.reply(404)
        chunks = []
        self.read_body(chunks)
        try:
            prediction = json.loads(b"".join(chunks).decode("utf-8"))
        except ValueError:
            return self.reply(400, b'{"detail": "not JSON"}')
        self.run.update(prediction)
        self.reply(200)

    def read_body(self, sink):
        write = sink.append if isinstance(sink, list) else sink.write
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return
                copy(self.rfile, write, size)
                self.rfile.readline()
        copy(self.rfile, write, int(self.headers.get("content-length") or 0))


def handler_for(run):
    return type("Handler", (RunnerHandler,), {"run": run})


def copy(source, write, size):
    while size > 0:
        chunk = source.read(min(size, 1024 * 1024))
        if not chunk:
            raise OSError("the upload ended early")
        write(chunk)
        size -= len(chunk)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cog_call(port, method, path, body=None, timeout=30):
    data = json.dumps(body).encode("utf-8") if body is not None else None
    headers = {"content-type": "application/json", "prefer": "respond-async"} if body is not None else {}
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(port, server):
    while True:
        if server.poll() is not None:
            raise RunFailed("the Cog server exited with status %d before it was ready" % server.returncode)
        try:
            status, body = cog_call(port, "GET", "/health-check", timeout=5)
            health = json.loads(body.decode("utf-8")) if status == 200 else {}
        except (OSError, ValueError):
            health = {}
        state = health.get("status")
        if state == "READY":
            return
        if state in ("SETUP_FAILED", "DEFUNCT"):
            setup = health.get("setup") or {}
            raise RunFailed("the trainer's setup failed: %s" % ((setup.get("logs") or state).strip()[-800:]))
        time.sleep(0.5)


def start_run(port, request, inputs, webhook):
    kind = "trainings" if request.get("mode") == "train" else "predictions"
    run_id = request.get("id") or "dreambooth"
    body = {"id": run_id, "input": inputs, "webhook": webhook, "webhook_events_filter": ["start", "output", "logs", "completed"]}
    status, answer = cog_call(port, "PUT", "/%s/%s" % (kind, urllib.parse.quote(run_id)), body)
    if status == 422:
        raise RunFailed("the trainer refused the input: %s" % validation_detail(answer))
    if status not in (200, 201, 202):
        raise RunFailed("the Cog server answered %d to the %s request: %s" % (status, kind[:-1], answer[:500].decode("utf-8", "replace")))
    return kind, run_id


def validation_detail(answer):
    try:
        detail = json.loads(answer.decode("utf-8")).get("detail")
    except (ValueError, AttributeError):
        return answer[:500].decode("utf-8", "replace")
    if isinstance(detail, list):
        return "; ".join("%s: %s" % (".".join(str(p) for p in d.get("loc", [])[2:]), d.get("msg")) for d in detail)
    return str(detail)[:500]


def finish(run):
    """The outcome of the terminal webhook: the archive in place, or a RunFailed."""
    p = run.prediction
    if p.get("status") == "failed":
        raise RunFailed(p.get("error") or "the trainer failed without an error message")
    if p.get("status") == "canceled":
        raise RunFailed("the run was canceled")
    target = os.path.join(MODEL_DIR, "output.zip")
    if not os.path.exists(target):
        if len(run.uploads) != 1:
            raise RunFailed("the trainer reported success but uploaded %d files (one output archive expected)" % len(run.uploads))
        os.replace(os.path.join(MODEL_DIR, run.uploads[0]), target)
    log("output archive: %d bytes" % os.path.getsize(target))


def write_failure(message):
    os.makedirs(os.path.dirname(FAILURE_FILE), exist_ok=True)
    with open(FAILURE_FILE, "w", encoding="utf-8") as f:
        f.write(message[:FAILURE_MAX_CHARS])


def stop_server(server):
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def main():
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    server = None
    try:
        request = load_request()
        run = Run(CALLBACK_URL)
        own = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(run))
        own.daemon_threads = True
        threading.Thread(target=own.serve_forever, daemon=True).start()
        base = "http://127.0.0.1:%d" % own.server_address[1]
        inputs = rewrite_inputs(request, base)

        cog_port = free_port()
        command = shlex.split(COG_COMMAND) + ["--upload-url", base + "/upload/"]
        if request.get("mode") == "train":
            command += ["--x-mode", "train"]
        log("starting the Cog server: %s" % " ".join(command))
        server = subprocess.Popen(command, env=dict(os.environ, PORT=str(cog_port)))
        wait_ready(cog_port, server)
        kind, run_id = start_run(cog_port, request, inputs, base + "/webhook")
        log("%s %s started" % (kind[:-1], run_id))
        while not run.done.wait(0.5):
            if stopping.is_set():
                cog_call(cog_port, "POST", "/%s/%s/cancel" % (kind, urllib.parse.quote(run_id)), timeout=10)
                run.done.wait(30)
                raise RunFailed("the job was stopped (SIGTERM) while the trainer ran")
            if server.poll() is not None:
                raise RunFailed("the Cog server exited with status %d during the run" % server.returncode)
        # The complete log reaches the training before the job ends.
        last = run.report(force=True)
        if last is not None:
            last.join(20)
        finish(run)
        log("succeeded")
        return 0
    except RunFailed as e:
        log("failed: %s" % e)
        write_failure(str(e))
        return 1
    except Exception as e:  # noqa: BLE001 - whatever happens, SageMaker must get a reason
        log("failed: %r" % e)
        write_failure("the runner failed: %r" % e)
        return 2
    finally:
        if server is not None:
            stop_server(server)


if __name__ == "__main__":
    sys.exit(main())

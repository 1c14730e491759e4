"""A stand-in for Cog's HTTP server (`python -m cog.server.http`), standard library only.

It speaks the part of Cog 0.9's protocol a trainer run uses, as the real server was observed
to (see test/helpers/fake-cog.ts): the port from env PORT; `--upload-url` and `--x-mode`;
`/health-check` STARTING, then READY/BUSY; `PUT /predictions/{id}` (or `/trainings/{id}` in
train mode) with `Prefer: respond-async` → 202 `processing`; webhooks start, logs (cumulative),
completed (retried); file inputs are URLs it downloads, as Cog's Path does; the output file is
PUT to `<upload-url>output.zip` before the terminal webhook; cancel → 200 then `canceled`.

The run is steered by its input, so one image serves every test: `steps`, `step_seconds`,
`fail_with` (fail with this error), `no_upload` (succeed without uploading), `output_bytes`.
Env FAKE_COG_SETUP=fail makes setup fail; FAKE_COG_SETUP_UNTIL=<path> keeps it STARTING until
that file exists (a test decides when setup ends, rather than racing a timer).

It also serves a predictor's synchronous `POST /predictions` (no Prefer header), as a served
model's image answers it: `prompt` is required (422 otherwise), the answer is the finished
prediction with 200 — `succeeded` with a list of one PNG as a data URI (Cog's file output
without an upload URL), or `failed` with the predictor's error (`fail_with`); another request
meanwhile → 409. `exit_with` ends the server process mid-prediction with that status, as a
crashed or OOM-killed model server would.
"""
import argparse
import base64
import hashlib
import http.server
import io
import json
import os
import struct
import sys
import threading
import time
import urllib.request
import zipfile
import zlib

parser = argparse.ArgumentParser()
parser.add_argument("--upload-url", dest="upload_url", default=None)
parser.add_argument("--x-mode", dest="mode", default="predict", choices=["predict", "train"])
args = parser.parse_args()
started = time.monotonic()
state = {"current": None}
lock = threading.Lock()


def send(url, body, attempts=1):
    for i in range(attempts):
        if i:
            time.sleep(0.1 * 2 ** i)
        req = urllib.request.Request(url, json.dumps(body).encode(), method="POST", headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                res.read()
                return True
        except OSError:
            pass
    return False


def output_zip(p, downloads):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model_index.json", json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}))
        z.writestr("unet/diffusion_pytorch_model.bin", os.urandom(int(p["input"].get("output_bytes", 65536))))
        z.writestr("inputs.json", json.dumps(downloads))
    return buf.getvalue()


def upload(p, data):
    req = urllib.request.Request(args.upload_url + "output.zip", data, method="PUT", headers={"content-type": "application/zip", "x-prediction-id": p["id"]})
    with urllib.request.urlopen(req, timeout=60) as res:
        res.read()
        return res.headers.get("location") or args.upload_url + "output.zip"


def predict(p, canceled):
    webhook = p.pop("_webhook")
    inp = p["input"]
    t0 = time.monotonic()
    send(webhook, dict(p))
    downloads = {}
    try:
        for key, value in inp.items():
            if isinstance(value, str) and value.startswith("http"):
                with urllib.request.urlopen(value, timeout=30) as res:
                    body = res.read()
                downloads[key] = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
                p["logs"] += "downloaded %s: %d bytes\n" % (key, len(body))
        for step in range(1, int(inp.get("steps", 3)) + 1):
            if canceled.is_set():
                break
            time.sleep(float(inp.get("step_seconds", 0.05)))
            p["logs"] += "step %d/%s\n" % (step, inp.get("steps", 3))
            send(webhook, dict(p))
        if canceled.is_set():
            p["status"] = "canceled"
        elif inp.get("fail_with"):
            p["status"], p["error"] = "failed", inp["fail_with"]
        else:
            p["output"] = None if inp.get("no_upload") else upload(p, output_zip(p, downloads))
            p["status"] = "succeeded"
    except Exception as e:  # noqa: BLE001 - Cog reports a predictor's exception as the error
        p["status"], p["error"] = "failed", str(e)
    p["metrics"] = {"predict_time": time.monotonic() - t0}
    send(webhook, dict(p), attempts=12)
    with lock:
        state["current"] = None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/health-check":
            return self.reply(404, {"detail": "Not Found"})
        if os.environ.get("FAKE_COG_SETUP") == "fail":
            return self.reply(200, {"status": "SETUP_FAILED", "setup": {"status": "failed", "logs": "Traceback ...\nRuntimeError: weights not found\n"}})
        until = os.environ.get("FAKE_COG_SETUP_UNTIL")
        if time.monotonic() - started < 0.3 or (until and not os.path.exists(until)):
            return self.reply(200, {"status": "STARTING", "setup": {}})
        self.reply(200, {"status": "BUSY" if state["current"] else "READY", "setup": {"status": "succeeded"}})

    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        kind = "trainings" if args.mode == "train" else "predictions"
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != kind:
            return self.reply(404, {"detail": "Not Found"})
        if self.headers.get("prefer") != "respond-async":
            return self.reply(400, {"detail": "this stand-in serves Prefer: respond-async only"})
        if not isinstance(body.get("input"), dict) or "instance_prompt" not in body["input"]:
            return self.reply(422, {"detail": [{"loc": ["body", "input", "instance_prompt"], "msg": "field required", "type": "value_error.missing"}]})
        with lock:
            if state["current"]:
                cur = state["current"][0]
                return self.reply(202, cur) if cur["id"] == parts[1] else self.reply(409, {"detail": "Already running a prediction"})
            p = {"id": parts[1], "input": body["input"], "output": None, "logs": "", "error": None, "status": "processing", "_webhook": body["webhook"]}
            canceled = threading.Event()
            state["current"] = (p, canceled)
        threading.Thread(target=predict, args=(p, canceled), daemon=True).start()
        self.reply(202, {k: v for k, v in p.items() if k != "_webhook"})

    def do_POST(self):
        if self.path == "/predictions":
            return self.predict_now()
        parts = self.path.strip("/").split("/")
        with lock:
            cur = state["current"]
        if len(parts) == 3 and parts[2] == "cancel" and cur and cur[0]["id"] == parts[1]:
            cur[1].set()
            return self.reply(200, {})
        self.reply(404, {"detail": "Not Found"})

    def predict_now(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        if self.headers.get("prefer") == "respond-async":
            return self.reply(400, {"detail": "this stand-in serves synchronous POST /predictions only"})
        inp = body.get("input")
        if not isinstance(inp, dict) or not isinstance(inp.get("prompt"), str):
            return self.reply(422, {"detail": [{"loc": ["body", "input", "prompt"], "msg": "field required", "type": "value_error.missing"}]})
        with lock:
            if state["current"]:
                return self.reply(409, {"detail": "Already running a prediction"})
            p = {"id": body.get("id"), "input": inp, "output": None, "logs": "", "error": None, "status": "processing"}
            state["current"] = (p, threading.Event())
        try:
            p = run_sync(p)
        finally:
            # As Cog: idle again before the answer goes out, so the next request is not refused.
            with lock:
                state["current"] = None
        self.reply(200, p)


def run_sync(p):
    inp, t0 = p["input"], time.monotonic()
    for step in range(1, int(inp.get("steps", 1)) + 1):
        time.sleep(float(inp.get("step_seconds", 0.01)))
        p["logs"] += "step %d/%s\n" % (step, inp.get("steps", 1))
    if inp.get("exit_with") is not None:
        os._exit(int(inp["exit_with"]))
    if inp.get("fail_with"):
        p["status"], p["error"] = "failed", inp["fail_with"]
    else:
        p["status"], p["output"] = "succeeded", ["data:image/png;base64," + base64.b64encode(one_pixel_png(inp["prompt"])).decode()]
    p["metrics"] = {"predict_time": time.monotonic() - t0}
    return p


def one_pixel_png(prompt):
    """A 1×1 PNG whose colour comes from the prompt."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rgb = hashlib.sha256(prompt.encode()).digest()[:3]
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" + rgb)) + chunk(b"IEND", b"")


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "5000"))), Handler)
server.daemon_threads = True
print("fake cog server on port %s, mode %s" % (server.server_address[1], args.mode), flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)

"""The web page of the visual Turing test (``colorkit turing``), served by the standard library.

Routes, and nothing else (every other path, ``..`` included, is 404):

- ``GET /``: the page (HTML, CSS and script in one response, no outside resources);
- ``POST /api/session``: starts a participant session; returns its trials as opaque image URLs
  (which version of a photo a URL shows is never in the URL or the response);
- ``POST /api/answer``: ``{"session", "trial", "answer": "real"|"fake", "rt_ms"}``, appended to
  ``answers/SESSION.jsonl`` at once;
- ``GET /img/NAME.png``: a stimulus, looked up by name among the study's stimuli only.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import secrets
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from colorkit.kernel.errors import UsageError
from colorkit.front.turing import Study, append_line

MAX_BODY = 4096

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Real or colorized?</title>
<style>
body{font-family:system-ui,sans-serif;background:#222;color:#eee;text-align:center;margin:0;padding:1.5em}
#frame{width:__SIZE__px;height:__SIZE__px;margin:1em auto;display:flex;align-items:center;justify-content:center;background:#333}
#frame img{max-width:100%;max-height:100%}
button{font-size:1.2em;padding:.5em 1.5em;margin:0 .5em;border-radius:6px;border:0;cursor:pointer}
#real{background:#4a4}#fake{background:#c54}#start{background:#48c}
button:disabled{opacity:.4;cursor:default} .hint{color:#aaa}
</style></head><body>
<h1>Real or colorized?</h1>
<div id="intro"><p>You will see __N__ photos, one at a time__TIMING__. Some have their true colours;
the others were coloured by a computer from a black-and-white version.</p>
<p>For each, answer <b>Real</b> (key <kbd>R</kbd>) or <b>Fake</b> (key <kbd>F</kbd>).</p>
<button id="start">Start (Enter)</button></div>
<div id="test" hidden><p id="progress"></p><div id="frame"><img id="photo" alt="photo to judge"></div>
<button id="real" disabled>Real (R)</button><button id="fake" disabled>Fake (F)</button>
<p class="hint">Keys: R = real, F = fake</p></div>
<div id="done" hidden><p>Thank you: your <span id="count"></span> answers are saved.</p></div>
<script>
const SECONDS = __SECONDS__;
let session = null, trials = [], k = 0, shownAt = 0, busy = false, timer = null;
const $ = (id) => document.getElementById(id);
async function post(url, body) {
  const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  if (!r.ok) throw new Error(await r.text());
  return r.json();
}
async function start() {
  if (session) return;
  const s = await post("/api/session", {});
  session = s.session; trials = s.trials;
  $("intro").hidden = true; $("test").hidden = false; show();
}
function show() {
  if (k >= trials.length) { $("test").hidden = true; $("done").hidden = false; $("count").textContent = trials.length; return; }
  $("progress").textContent = "Image " + (k + 1) + " of " + trials.length;
  $("real").disabled = $("fake").disabled = true;
  const img = $("photo"); img.style.visibility = "visible";
  img.onload = () => {
    shownAt = performance.now(); busy = false;
    $("real").disabled = $("fake").disabled = false;
    if (SECONDS > 0) timer = setTimeout(() => { img.style.visibility = "hidden"; }, SECONDS * 1000);
  };
  busy = true; img.src = trials[k].url;
}
async function answer(a) {
  if (!session || busy || k >= trials.length) return;
  busy = true; clearTimeout(timer);
  const rt = performance.now() - shownAt;
  await post("/api/answer", {session: session, trial: trials[k].trial, answer: a, rt_ms: rt});
  k += 1; show();
}
$("start").onclick = start; $("real").onclick = () => answer("real"); $("fake").onclick = () => answer("fake");
document.addEventListener("keydown", (e) => {
  const key = e.key.toLowerCase();
  if (!session && (key === "enter" || key === " ")) start();
  else if (key === "r") answer("real");
  else if (key === "f") answer("fake");
});
</script></body></html>
"""


class StudyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], study: Study | None = None) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, dict[str, Any]] = {}
        super().__init__(address, Handler)
        if study is not None:
            self.attach(study)

    def attach(self, study: Study) -> None:
        """Serve ``study`` (the port can be bound first, so a port in use fails before any work)."""
        self.study = study
        # participants already seen in earlier runs of the server keep their numbers
        self.next_participant = len(list((study.folder / "answers").glob("*.jsonl")))

    def new_session(self) -> dict[str, Any]:
        with self.lock:
            participant = self.next_participant
            self.next_participant += 1
            sid = secrets.token_hex(8)
            plan = self.study.plan(participant)
            self.sessions[sid] = {"participant": participant, "plan": plan, "answered": set()}
        append_line(self.study.folder / "answers" / f"{sid}.jsonl",
                    {"type": "session", "session": sid, "participant": participant, "started": _now(),
                     "plan": [{k: t[k] for k in ("trial", "image", "condition")} for t in plan]})
        return {"session": sid, "trials": [{"trial": t["trial"], "url": f"/img/{t['file']}"} for t in plan]}

    def answer(self, body: dict[str, Any]) -> dict[str, Any] | None:
        sid, trial, answer = body.get("session"), body.get("trial"), body.get("answer")
        rt = body.get("rt_ms")
        with self.lock:
            state = self.sessions.get(sid) if isinstance(sid, str) else None
            if (state is None or not isinstance(trial, int) or not 0 <= trial < len(state["plan"])
                    or answer not in ("real", "fake") or trial in state["answered"]
                    or not isinstance(rt, (int, float)) or isinstance(rt, bool)):
                return None
            state["answered"].add(trial)
            t = state["plan"][trial]
            record = {"type": "answer", "session": sid, "participant": state["participant"], "trial": trial,
                      "image": t["image"], "source": self.study.config["images"][t["image"]],
                      "condition": t["condition"], "answer": answer, "rt_ms": round(float(rt), 1), "time": _now()}
            append_line(self.study.folder / "answers" / f"{sid}.jsonl", record)
        return {"saved": True}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class Handler(BaseHTTPRequestHandler):
    server: StudyServer
    server_version = "colorkit-turing"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal shows the address only
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _not_found(self) -> None:
        self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        study = self.server.study
        if path in ("/", "/index.html"):
            page = (PAGE.replace("__SIZE__", str(study.config["size"])).replace("__N__", str(study.n_images))
                    .replace("__SECONDS__", json.dumps(study.config["seconds"]))
                    .replace("__TIMING__", f", each for {study.config['seconds']:g} seconds"
                             if study.config["seconds"] else ""))
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
            return
        name = path[len("/img/"):] if path.startswith("/img/") else None
        if name is None or name not in study.stimuli:  # a lookup, never a path built from the request
            self._not_found()
            return
        data = (study.folder / "stimuli" / study.stimuli[name].file).read_bytes()
        self._send(HTTPStatus.OK, data, "image/png")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/api/session", "/api/answer"):
            self._not_found()
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "body missing or too large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "expected a JSON object"})
            return
        if path == "/api/session":
            self._json(HTTPStatus.OK, self.server.new_session())
            return
        saved = self.server.answer(body)
        if saved is None:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "unknown session or trial, trial answered already, "
                                                         "or answer not 'real'/'fake'"})
            return
        self._json(HTTPStatus.OK, saved)

    do_PUT = do_DELETE = do_PATCH = _not_found  # type: ignore[assignment]


def _free_port(host: str) -> int | None:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    except OSError:
        return None


def make_server(study: Study | None, host: str = "127.0.0.1", port: int = 8765) -> StudyServer:
    """Bind the study's server (``port`` 0 picks a free one); a port in use is a one-line error."""
    try:
        return StudyServer((host, port), study)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            other = _free_port(host)
            hint = f" (for example --port {other})" if other else ""
            raise UsageError(f"port {port} on {host} is in use; pick another with --port{hint}") from None
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); check --host and --port") from None

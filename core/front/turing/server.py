"""The web page of the visual Turing test (``colorkit turing``), served by the standard library.

Routes, and nothing else (every other path, ``..`` included, is 404):

- ``GET /``: the page (HTML, CSS and script in one response, no outside resources);
- ``POST /api/session``: starts a participant session; returns its trials as opaque image URLs
  (which version of a photo a URL shows is never in the URL or the response);
- ``POST /api/answer``: ``{"session", "trial", "answer": "real"|"fake", "rt_ms"}``, appended to
  ``answers/SESSION.jsonl`` before it is acknowledged; the same answer sent again is acknowledged
  and stored once (:mod:`colorkit.front.turing.store` keeps the sessions, on disk);
- ``GET /img/NAME.png``: a stimulus, looked up by name among the study's stimuli only.

What it takes: on a loopback address, only requests whose ``Host`` names a loopback address
(no DNS rebinding); POSTs of ``application/json`` only, from the page's own origin when the
browser says one (``Origin``, ``Sec-Fetch-Site``), so another web site cannot start sessions or
answer. Connections queue in a deep listen backlog, and each is closed after
:attr:`StudyServer.connection_timeout` seconds of silence. No request prints a traceback: what
goes wrong is a status for the client and, when it is the server's fault, one line on stderr.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from colorkit.front.turing.study import Study
from colorkit.front.turing.store import MAX_SESSIONS, Refused, SessionStore
from colorkit.kernel.errors import UsageError

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
<p id="status" class="hint" role="status"></p>
<script>
const SECONDS = __SECONDS__;
let session = null, trials = [], k = 0, shownAt = 0, busy = false, timer = null, starting = false, saving = false;
const $ = (id) => document.getElementById(id);
const pause = (ms) => new Promise((done) => setTimeout(done, ms));
// POST JSON until the server acknowledges it. A network error, a reply cut short, a 5xx, a 408 or
// a 429 is tried again, the same request, after a pause that doubles from a quarter of a second
// up to 8 seconds (plus up to half again at random, so pages that lost the server together do
// not come back together); the server stores an answer once however often it is sent. Any other
// refusal is final and thrown.
async function send(url, body) {
  for (let attempt = 0; ; attempt++) {
    let reply = null;
    try {
      reply = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                body: JSON.stringify(body), cache: "no-store",
                                signal: typeof AbortSignal !== "undefined" && AbortSignal.timeout
                                  ? AbortSignal.timeout(20000) : undefined});
      if (reply.ok) { const data = await reply.json(); $("status").textContent = ""; return data; }
    } catch (e) { reply = null; }
    if (reply && reply.status < 500 && reply.status !== 408 && reply.status !== 429) {
      let reason = "";
      try { reason = (await reply.json()).error || ""; } catch (e) { reason = ""; }
      throw new Error(reason || "the server answered " + reply.status);
    }
    $("status").textContent = "Saving... the server did not answer; trying again.";
    await pause(Math.min(8000, 250 * 2 ** attempt) * (1 + Math.random() / 2));
  }
}
async function start() {
  if (session || starting) return;
  starting = true; $("start").disabled = true;
  let s = null;
  try { s = await send("/api/session", {}); }
  catch (e) { $("status").textContent = "The study could not start: " + e.message; starting = false; $("start").disabled = false; return; }
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
  busy = true; saving = true; clearTimeout(timer);
  $("real").disabled = $("fake").disabled = true;
  const body = {session: session, trial: trials[k].trial, answer: a, rt_ms: Math.max(0, performance.now() - shownAt)};
  try { await send("/api/answer", body); }
  catch (e) { saving = false; $("status").textContent = "Your answer was not saved: " + e.message; return; }
  saving = false; k += 1; show();
}
$("start").onclick = start; $("real").onclick = () => answer("real"); $("fake").onclick = () => answer("fake");
document.addEventListener("keydown", (e) => {
  const key = e.key.toLowerCase();
  if (!session && (key === "enter" || key === " ")) start();
  else if (key === "r") answer("real");
  else if (key === "f") answer("fake");
});
window.addEventListener("beforeunload", (e) => { if (saving) { e.preventDefault(); e.returnValue = ""; } });
</script></body></html>
"""


class StudyServer(ThreadingHTTPServer):
    """The study's HTTP server: one thread per connection, each with a timeout."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: a burst of participants queues, not reset
    #: Seconds a connection may stay silent (before or inside a request) before it is closed.
    connection_timeout = 15.0

    def __init__(self, address: tuple[str, int], study: Study | None = None,
                 max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        super().__init__(address, Handler)
        self.loopback = _is_loopback(str(self.server_address[0]))
        if study is not None:
            self.attach(study)

    def attach(self, study: Study) -> None:
        """Serve ``study`` (the port can be bound first, so a port in use fails before any work);
        its sessions of earlier runs are read back and go on."""
        self.study = study
        self.store = SessionStore(study, self.max_sessions)

    def new_session(self) -> dict[str, Any]:
        """A new participant session (raises :class:`~colorkit.front.turing.store.Refused`)."""
        return self.store.create()

    def answer(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Store an answer: the acknowledgment, or ``None`` when it is refused."""
        try:
            return self.store.answer(body)
        except Refused:
            return None

    def report(self, exc: BaseException, client: Any) -> None:
        """One line on stderr for a request the server failed on (never a traceback)."""
        who = client[0] if isinstance(client, tuple) and client else "a client"
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"colorkit turing: a request from {who} failed ({type(exc).__name__}: {exc})\n")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed outside a request's own handling: quiet when the client
        went away or stalled, one line otherwise."""
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):
            self.report(exc, client_address)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _host_name(value: str) -> str | None:
    """The host name of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        name, sep, rest = value[1:].partition("]")
        return name if sep and (not rest or rest.startswith(":")) else None
    name, _, port = value.partition(":")
    return None if ":" in port else name


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON")


class Handler(BaseHTTPRequestHandler):
    server: StudyServer
    server_version = "colorkit-turing"

    def setup(self) -> None:
        self.timeout = self.server.connection_timeout  # applied to the socket by setup()
        super().setup()

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

    def _guarded(self, work: Callable[[], None]) -> None:
        """Run a request's handling: a client that went away or stalled closes the connection,
        anything else is a 500 for the client and one line on the console."""
        try:
            work()
        except OSError:
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a request never stops the server or prints a traceback
            self.close_connection = True
            self.server.report(exc, self.client_address)
            with contextlib.suppress(Exception):
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "the server failed on this request; try again"})

    def _host_refused(self) -> bool:
        """On a loopback address, a ``Host`` that is not one (a DNS-rebound name) is refused."""
        host = self.headers.get("Host")
        if host is None or not self.server.loopback:
            return False
        name = _host_name(host)
        if name is not None and _is_loopback(name):
            return False
        self._json(HTTPStatus.FORBIDDEN, {"error": "this server answers its own address only"})
        return True

    def _post_refused(self) -> bool:
        """A POST from another origin, or of anything but JSON, is refused: a web page can send
        a cross-origin text/plain or form POST without asking, never an application/json one."""
        origin, host = self.headers.get("Origin"), (self.headers.get("Host") or "").strip().lower()
        site = (self.headers.get("Sec-Fetch-Site") or "same-origin").strip().lower()
        if (origin is not None and origin.strip().lower() not in (f"http://{host}", f"https://{host}")) \
                or site not in ("same-origin", "none"):
            self._json(HTTPStatus.FORBIDDEN, {"error": "requests from other web sites are refused"})
            return True
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
            return True
        return False

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _get(self) -> None:
        if self._host_refused():
            return
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
        try:
            data = (study.folder / "stimuli" / study.stimuli[name].file).read_bytes()
        except OSError:
            self._not_found()
            return
        self._send(HTTPStatus.OK, data, "image/png")

    def _read_json(self) -> dict[str, Any] | None:
        """The request's body as a JSON object of standard JSON; ``None`` after a 400 reply."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"the body must be 0 to {MAX_BODY} bytes"})
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}", parse_constant=_no_constant)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, NaN/Infinity, nested too deep
            body = None
        if not isinstance(body, dict):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "expected a JSON object"})
            return None
        return body

    def _post(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/api/session", "/api/answer"):
            self._not_found()
            return
        if self._host_refused() or self._post_refused():
            return
        body = self._read_json()
        if body is None:
            return
        try:
            reply = self.server.store.create() if path == "/api/session" else self.server.store.answer(body)
        except Refused as refused:
            self._json(refused.status, {"error": refused.message})
            return
        self._json(HTTPStatus.OK, reply)

    do_PUT = do_DELETE = do_PATCH = _not_found  # type: ignore[assignment]


def _free_port(host: str) -> int | None:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    except OSError:
        return None


def make_server(study: Study | None, host: str = "127.0.0.1", port: int = 8765,
                max_sessions: int = MAX_SESSIONS) -> StudyServer:
    """Bind the study's server (``port`` 0 picks a free one); a port in use, or out of range, is
    a one-line error, and so is a ``max_sessions`` under 1."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: give a port from 1 to 65535, or 0 for any free one")
    if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
        raise UsageError(f"--max-sessions {max_sessions}: give the most participant sessions, 1 or more")
    try:
        return StudyServer((host, port), study, max_sessions)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            other = _free_port(host)
            hint = f" (for example --port {other})" if other else ""
            raise UsageError(f"port {port} on {host} is in use; pick another with --port{hint}") from None
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); check --host and --port") from None

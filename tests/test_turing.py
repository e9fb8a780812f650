"""The visual Turing test (``colorkit turing``): balanced plans, the study directory, the HTTP
server (answers saved at once, nothing outside the study served), results with confidence
intervals, one-line errors, and the page driven in a real headless browser."""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import invoke, one_line_error
from colorkit.kernel.errors import UsageError
from colorkit.kernel.registry import build_registry
from colorkit.front.turing.study import Study, create_study, open_study, summarize, wilson
from colorkit.front.turing.server import make_server

MODEL = "colorkit-cifar10"  # the shipped default: loads in a moment, no training needed


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Ten small colour photos (crops of scikit-image's), one grayscale photo and one broken file."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.stereo_motorcycle()[0]]
    for i in range(10):
        src = sources[i % len(sources)]
        top, left = (i // len(sources)) * 120, 40
        Image.fromarray(src[top:top + 96, left:left + 128]).save(folder / f"photo{i:02d}.png")
    Image.fromarray(data.camera()[:64, :64]).save(folder / "gray.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


@pytest.fixture(scope="module")
def study(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "s"
    return create_study([MODEL], str(photos), out, registry=build_registry(), size=64, seed=3, log=lambda s: None)


@pytest.fixture
def served(study):
    server = make_server(study, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _request(port, method, path, body=None, headers=None):
    """One request on its own connection: ``(status, body bytes)``; ``body`` is sent as JSON, or
    as it is when it is ``bytes``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_plans_show_each_photo_once_with_balanced_conditions():
    study = Study(Path("."), {"models": [{"label": "a"}, {"label": "b"}], "images": [f"i{k}" for k in range(10)],
                              "seed": 7, "salt": "s"})
    plans = [study.plan(p) for p in range(3)]
    for plan in plans:
        assert sorted(t["image"] for t in plan) == list(range(10))
        counts = Counter(t["condition"] for t in plan)
        assert set(counts) == {"original", "a", "b"} and max(counts.values()) - min(counts.values()) <= 1
    # across three participants every photo is shown once in each condition
    for image in range(10):
        assert sorted(t["condition"] for plan in plans for t in plan if t["image"] == image) == ["a", "b", "original"]
    assert [t["image"] for t in plans[0]] != [t["image"] for t in plans[1]]  # orders shuffled per participant
    assert study.plan(1) == plans[1]  # and reproducible from the seed
    # the file name says nothing about the condition
    assert all(re.fullmatch(r"[0-9a-f]{20}\.png", t["file"]) for t in plans[0])


def test_wilson_interval_matches_known_values():
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert all(np.isnan(wilson(0, 0)))


def test_study_directory_holds_config_and_stimuli(study, photos):
    config = json.loads((study.folder / "study.json").read_text())
    assert config["models"] == [{"label": MODEL, "target": MODEL}]
    assert config["images"] == [f"photo{i:02d}.png" for i in range(10)]  # grayscale and broken files left out
    assert {config[k] for k in ("seed", "size")} == {3, 64}
    files = sorted(p.name for p in (study.folder / "stimuli").iterdir())
    assert len(files) == 20 and files == sorted(study.stimuli)
    original = Image.open(study.folder / "stimuli" / study.stimulus_file(0, "original"))
    colourised = Image.open(study.folder / "stimuli" / study.stimulus_file(0, MODEL))
    assert original.size == colourised.size == (64, 48)  # longer side at --size, aspect kept
    a, b = np.asarray(original, dtype=int), np.asarray(colourised, dtype=int)
    assert np.abs(a - b).mean() > 0  # the model's version differs from the original...
    grey = lambda x: x @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    assert np.abs(grey(a) - grey(b)).mean() < 6  # ...in colour, not in lightness


def test_reopening_a_study_keeps_its_config_and_refuses_another(study, photos):
    before = (study.folder / "study.json").read_bytes()
    again = create_study([MODEL], str(photos), study.folder, registry=build_registry(), size=64, seed=3,
                         log=lambda s: None)
    assert (study.folder / "study.json").read_bytes() == before and again.stimuli.keys() == study.stimuli.keys()
    with pytest.raises(UsageError, match="different config \\('size' differs\\)"):
        create_study([MODEL], str(photos), study.folder, registry=build_registry(), size=96, seed=3,
                     log=lambda s: None)
    assert (study.folder / "study.json").read_bytes() == before


def test_server_saves_answers_and_serves_nothing_else(served, study):
    port = served
    status, page = _request(port, "GET", "/")
    assert status == 200 and b"Real or colorized?" in page and b"Image " in page
    status, body = _request(port, "POST", "/api/session", {})
    session = json.loads(body)
    assert status == 200 and len(session["trials"]) == 10
    for trial in session["trials"]:
        status, data = _request(port, "GET", trial["url"])
        assert status == 200 and data[:8] == b"\x89PNG\r\n\x1a\n"
    answers = ["real", "fake"] * 5
    for trial, answer in zip(session["trials"], answers):
        status, _ = _request(port, "POST", "/api/answer",
                             {"session": session["session"], "trial": trial["trial"], "answer": answer, "rt_ms": 900})
        assert status == 200
    # the same answer again (a retry whose acknowledgment was lost) is acknowledged, not stored twice
    status, again = _request(port, "POST", "/api/answer",
                             {"session": session["session"], "trial": 0, "answer": "real", "rt_ms": 1})
    assert status == 200 and json.loads(again) == {"saved": True, "repeat": True}
    assert _request(port, "POST", "/api/answer",  # another answer to an answered trial is refused
                    {"session": session["session"], "trial": 0, "answer": "fake", "rt_ms": 1})[0] == 409
    for bad in ({"session": session["session"], "trial": 99, "answer": "real", "rt_ms": 1},
                {"session": "nope", "trial": 1, "answer": "real", "rt_ms": 1},
                {"session": session["session"], "trial": 1, "answer": "maybe", "rt_ms": 1}):
        assert _request(port, "POST", "/api/answer", bad)[0] == 400
    lines = (study.folder / "answers" / f"{session['session']}.jsonl").read_text().splitlines()
    saved = [json.loads(line) for line in lines if '"answer"' in line and '"type": "answer"' in line]
    assert [a["answer"] for a in saved] == answers and all(a["rt_ms"] == 900 for a in saved)
    plan = open_study(study.folder).plan(saved[0]["participant"])
    assert [a["condition"] for a in saved] == [t["condition"] for t in plan]
    summary = summarize(study.folder)
    by = {row["condition"]: row for row in [summary["original"], *summary["models"]]}
    expected = Counter(a["condition"] for a in saved if a["answer"] == "real")
    assert all(by[c]["judged_real"] == expected.get(c, 0) for c in by)
    # nothing outside the study's stimuli: traversal in every spelling, the config, the answers
    for path in ["/study.json", "/img/../study.json", "/img/..%2fstudy.json", "/img/%2e%2e/study.json",
                 "/img/%2e%2e%2fstudy.json", "/../../etc/passwd", "//etc/passwd", "/stimuli/",
                 f"/stimuli/{study.stimulus_file(0, 'original')}", f"/answers/{session['session']}.jsonl",
                 "/img/", "/img/" + study.stimulus_file(0, "original") + "/..", "/img/..\\study.json"]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        assert conn.getresponse().status == 404, path
        conn.close()


def _start_cli(args, env=None):
    proc = subprocess.Popen([sys.executable, "-m", "colorkit", "turing", *map(str, args), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    deadline = time.time() + 120
    for line in proc.stderr:
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if match:
            return proc, int(match.group(1))
        assert time.time() < deadline, "the server did not start"
    raise AssertionError(f"no address printed (exit {proc.wait()})")


@pytest.mark.slow
def test_answers_survive_a_killed_server(photos, tmp_path):
    out = tmp_path / "study"
    proc, port = _start_cli([MODEL, "--images", photos, "--out", out, "--size", "48", "--limit", "6"])
    try:
        session = json.loads(_request(port, "POST", "/api/session", {})[1])
        for trial in session["trials"][:4]:
            assert _request(port, "POST", "/api/answer", {"session": session["session"], "trial": trial["trial"],
                                                          "answer": "real", "rt_ms": 500})[0] == 200
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with open(out / "answers" / f"{session['session']}.jsonl", "a") as fh:
        fh.write('{"type": "answer", "condi')  # a line cut short by a kill is skipped, not fatal
    summary = summarize(out)
    assert summary["answers"] == 4 and summary["participants"] == 1 and summary["images"] == 6
    result = invoke(["turing", "--results", out])
    assert result.exit_code == 0 and "1 participant, 4 answers" in result.output
    assert f"{MODEL}: fooling rate" in result.output and "originals judged real" in result.output


def test_bad_input_is_one_line(photos, tmp_path):
    assert "colorkit-cifar1" in one_line_error(invoke(["turing", "colorkit-cifar1", "--images", photos,
                                                        "--out", tmp_path / "a"]))
    empty = tmp_path / "empty"
    empty.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(empty / "grey.png")
    assert "no readable colour photo" in one_line_error(invoke(["turing", MODEL, "--images", empty,
                                                                "--out", tmp_path / "b"]))
    assert "neither a folder nor a dataset" in one_line_error(invoke(["turing", MODEL, "--images", tmp_path / "nope",
                                                                      "--out", tmp_path / "c"]))
    assert "no study.json" in one_line_error(invoke(["turing", "--results", empty]))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line_error(invoke(["turing", MODEL, "--images", photos, "--out", tmp_path / "d", "--limit", "2",
                                      "--size", "32", "--port", port]))
    assert f"port {port} on 127.0.0.1 is in use" in line and re.search(r"--port \d+", line)
    assert not (tmp_path / "d").exists()  # refused before any work


# --- under load, across restarts, against bad input (issue 33, point 6) ---


@pytest.fixture
def fresh_study(study, tmp_path):
    """A copy of the module's study with no answers yet (its stimuli copied, nothing colorized)."""
    folder = tmp_path / "fresh"
    (folder / "answers").mkdir(parents=True)
    shutil.copy(study.folder / "study.json", folder / "study.json")
    shutil.copytree(study.folder / "stimuli", folder / "stimuli")
    return open_study(folder)


@contextlib.contextmanager
def _serving(study, **options):
    """The study served on a free port of 127.0.0.1 in a thread: ``(port, server)``."""
    server = make_server(study, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], server
    finally:
        server.shutdown()
        server.server_close()


def _post_until_acknowledged(port, path, body, tries=30):
    """POST as the page does: again, after a growing pause, on a connection error or a 5xx,
    until the server answers; ``(status, reply, retries)``."""
    for retry in range(tries):
        try:
            status, data = _request(port, "POST", path, body)
        except OSError:
            status, data = None, b""
        if status is not None and status < 500:
            return status, json.loads(data), retry
        time.sleep(min(1.0, 0.02 * 2 ** retry))
    raise AssertionError(f"{path}: no acknowledgment after {tries} tries")


def _send_and_hang_up(port, path, body):
    """Send a whole POST and close the connection without reading the reply: the server
    acts on it, the client never sees the acknowledgment (a reset or a closed tab)."""
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + data)


def _answer_lines(folder, sid):
    lines = (folder / "answers" / f"{sid}.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}")) for line in lines]
    return [r for r in records if r["type"] == "answer"]


def test_a_burst_of_connections_waits_in_the_listen_queue(fresh_study):
    """Sixty connections at once, none accepted yet: all queue (a listen backlog of 5 drops the
    seventh, which a browser sees as a failed request)."""
    server = make_server(fresh_study, "127.0.0.1", 0)  # bound and listening, not accepting
    port = server.server_address[1]
    clients = []
    try:
        for k in range(60):
            s = socket.socket()
            clients.append(s)
            s.settimeout(1.0)
            try:
                s.connect(("127.0.0.1", port))
            except OSError as exc:
                pytest.fail(f"connection {k + 1} of a burst of 60 was not queued ({exc!r})")
    finally:
        for s in clients:
            s.close()
        server.server_close()


@pytest.mark.slow
def test_forty_participants_twenty_at_a_time_lose_no_answer(fresh_study):
    """40 participants, 20 at a time, each answering every trial over HTTP; a third of the answers
    go through a retry whose first try's acknowledgment was never read, another third are sent
    twice: every answer is on disk exactly once, and every second post is acknowledged."""
    choice = ("real", "fake")

    def participant(n):
        status, session, _ = _post_until_acknowledged(port, "/api/session", {})
        assert status == 200, session
        sid, retries, repeats = session["session"], 0, 0
        for trial in session["trials"]:
            body = {"session": sid, "trial": trial["trial"], "answer": choice[(n + trial["trial"]) % 2],
                    "rt_ms": 100 + n}
            if trial["trial"] % 3 == 1:
                _send_and_hang_up(port, "/api/answer", body)
                retries += 1
            status, reply, more = _post_until_acknowledged(port, "/api/answer", body)
            assert status == 200 and reply["saved"] is True, reply
            retries += more
            if trial["trial"] % 3 == 2:
                status, reply, _ = _post_until_acknowledged(port, "/api/answer", body)
                assert status == 200 and reply == {"saved": True, "repeat": True}, reply
                repeats += 1
        return sid, n, len(session["trials"]), retries, repeats

    with _serving(fresh_study) as (port, _), ThreadPoolExecutor(max_workers=20) as pool:
        done = list(pool.map(participant, range(40)))
    assert len({sid for sid, *_ in done}) == 40
    assert sum(r for *_, r, _ in done) >= 40 * 3 and sum(r for *_, r in done) >= 40 * 3  # both paths taken
    for sid, n, count, _, _ in done:
        saved = _answer_lines(fresh_study.folder, sid)
        assert sorted(a["trial"] for a in saved) == list(range(count)), sid  # each trial exactly once
        assert all(a["answer"] == choice[(n + a["trial"]) % 2] and a["rt_ms"] == 100 + n for a in saved)
    summary = summarize(fresh_study.folder)
    assert summary["participants"] == 40 and summary["answers"] == 40 * fresh_study.n_images


NODE = shutil.which("node")
PAGE_HARNESS = r"""
// The page's script in node with a stand-in DOM and fetch: the first tries to save an answer fail
// (two network errors, a 503, a 429), then the server acknowledges; the pauses between tries are logged.
const vm = require("vm"), fs = require("fs");
const elements = {};
function element(id) {
  if (!elements[id]) {
    const el = {id, hidden: false, disabled: false, textContent: "", style: {}, onclick: null, onload: null};
    Object.defineProperty(el, "src", {set(v) { el._src = v; setTimeout(() => el.onload && el.onload(), 5); },
                                      get() { return el._src; }});
    elements[id] = el;
  }
  return elements[id];
}
let keydown = null;
const posts = [], pauses = [], failures = ["network", "network", 503, 429];
const reply = (status, data) => ({ok: status >= 200 && status < 300, status,
                                  json: async () => data, text: async () => JSON.stringify(data)});
const context = vm.createContext({
  console, Math, JSON, Promise,
  document: {getElementById: element, addEventListener: (type, fn) => { if (type === "keydown") keydown = fn; }},
  window: {addEventListener() {}},
  performance: {now: () => Date.now()},
  setTimeout: (fn, ms) => { pauses.push(ms); return setTimeout(fn, 1); },
  clearTimeout,
  fetch: async (url, options) => {
    posts.push({url, body: JSON.parse(options.body), method: options.method,
                type: (options.headers || {})["Content-Type"]});
    if (url === "/api/session") return reply(200, {session: "s1", trials: [{trial: 0, url: "/img/a.png"},
                                                                          {trial: 1, url: "/img/b.png"}]});
    const failure = url === "/api/answer" && posts.filter((p) => p.body.trial === 0).length <= 4 ? failures.shift() : null;
    if (failure === "network") throw new TypeError("Failed to fetch");
    if (failure) return reply(failure, {error: "busy"});
    return reply(200, {saved: true});
  },
});
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(test) { for (let i = 0; i < 400 && !test(); i++) await sleep(5); }
(async () => {
  keydown({key: "Enter"});
  await until(() => elements.progress && elements.progress.textContent === "Image 1 of 2" && !elements.real.disabled);
  keydown({key: "r"});
  await sleep(2);
  keydown({key: "f"});  // pressed while the first answer is still being saved: ignored
  await until(() => elements.progress.textContent === "Image 2 of 2" && !elements.real.disabled);
  const progress = elements.progress.textContent;
  keydown({key: "f"});
  await until(() => elements.done && !elements.done.hidden);
  console.log(JSON.stringify({posts, pauses, progress, done: !elements.done.hidden,
                              count: elements.count.textContent}));
})();
"""


@pytest.mark.skipif(NODE is None, reason="no node here to run the page's script (apt-get install nodejs)")
def test_the_page_retries_an_unsaved_answer_with_growing_pauses(served, tmp_path):
    """The page's own script (from the server) in node: an answer whose POST fails (network
    error, 503, 429) is sent again, the same answer, after growing pauses, until acknowledged;
    the next photo comes only then, and a key pressed meanwhile changes nothing."""
    page = _request(served, "GET", "/")[1].decode()
    script = re.search(r"<script>(.*)</script>", page, re.S).group(1)
    (tmp_path / "page.js").write_text(script)
    (tmp_path / "harness.js").write_text(PAGE_HARNESS)
    run = subprocess.run([NODE, tmp_path / "harness.js", tmp_path / "page.js"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    answers = [p for p in out["posts"] if p["url"] == "/api/answer"]
    assert all(p["method"] == "POST" and p["type"] == "application/json" for p in out["posts"])
    first = [p["body"] for p in answers if p["body"]["trial"] == 0]
    assert len(first) == 5 and all(b == first[0] for b in first) and first[0]["answer"] == "real"
    assert [p["body"]["answer"] for p in answers if p["body"]["trial"] == 1] == ["fake"]
    assert out["progress"] == "Image 2 of 2" and out["done"] and str(out["count"]) == "2"
    pauses = [ms for ms in out["pauses"] if ms >= 100]
    assert len(pauses) == 4 and all(a < b for a, b in zip(pauses, pauses[1:])), out["pauses"]  # a backoff


def test_answers_are_validated_strictly_before_anything_changes(served, study):
    """Non-finite, negative, huge or mistyped values are 400 with nothing stored or marked, so the
    proper answer is still taken; what is stored is standard JSON."""
    port = served
    sid = json.loads(_request(port, "POST", "/api/session", {})[1])["session"]
    raw = '{"session": "%s", "trial": 0, "answer": "real", "rt_ms": %s}'
    for rt in ("1" + "0" * 400, "NaN", "Infinity", "-Infinity", "-5000", "1e400", "1e12", "true", '"5"', "null"):
        status, data = _request(port, "POST", "/api/answer", (raw % (sid, rt)).encode())
        assert status == 400, (rt, data)
        assert "error" in json.loads(data)
    for bad in ({"trial": True}, {"trial": 0.0}, {"trial": "0"}, {"trial": -1}, {"answer": "REAL"},
                {"answer": ["real"]}, {"session": 5}, {"session": ["x"]}, {"rt_ms": None}):
        body = {"session": sid, "trial": 1, "answer": "real", "rt_ms": 5, **bad}
        assert _request(port, "POST", "/api/answer", body)[0] == 400, bad
    assert _answer_lines(study.folder, sid) == []
    for trial in (0, 1):  # the refused tries changed nothing: the real answers are taken
        status, data = _request(port, "POST", "/api/answer", {"session": sid, "trial": trial, "answer": "fake",
                                                                "rt_ms": 1234.56})
        assert status == 200 and json.loads(data) == {"saved": True}
    assert [(a["trial"], a["rt_ms"]) for a in _answer_lines(study.folder, sid)] == [(0, 1234.6), (1, 1234.6)]


def test_a_session_or_answer_the_disk_refused_can_be_sent_again(fresh_study, monkeypatch):
    """A session is on disk (written whole, with colorkit's atomic writer) before the page hears
    of it; an answer the disk refuses is a 503 and leaves the trial open, so the page's retry
    stores it, once."""
    from colorkit.front.turing import store as turing_store

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with _serving(fresh_study) as (port, _):
        with monkeypatch.context() as patch:
            patch.setattr(turing_store, "atomic_write_bytes", full)
            assert _request(port, "POST", "/api/session", {})[0] == 503
        assert list((fresh_study.folder / "answers").iterdir()) == []  # no session half made
        sid = json.loads(_request(port, "POST", "/api/session", {})[1])["session"]
        body = {"session": sid, "trial": 0, "answer": "real", "rt_ms": 10}
        with monkeypatch.context() as patch:
            patch.setattr(turing_store, "append_line", full)
            assert _request(port, "POST", "/api/answer", body)[0] == 503
        status, data = _request(port, "POST", "/api/answer", body)
        assert status == 200 and json.loads(data) == {"saved": True}
    assert [a["trial"] for a in _answer_lines(fresh_study.folder, sid)] == [0]


def test_a_restarted_server_continues_the_sessions_in_progress(fresh_study):
    """Sessions live on disk: a new server on the study directory (after a kill that cut a line
    short) takes the rest of a session's answers, acknowledges a repeat of an earlier one,
    refuses a changed one, and numbers new participants after the old ones."""
    with _serving(fresh_study) as (port, _):
        session = json.loads(_request(port, "POST", "/api/session", {})[1])
        sid = session["session"]
        for trial in (0, 1, 2):
            assert _request(port, "POST", "/api/answer", {"session": sid, "trial": trial, "answer": "real",
                                                          "rt_ms": 300})[0] == 200
    with open(fresh_study.folder / "answers" / f"{sid}.jsonl", "a") as fh:
        fh.write('{"type": "answer", "tri')  # a server killed mid-line
    with _serving(open_study(fresh_study.folder)) as (port, _):
        for trial in range(3, fresh_study.n_images):
            status, data = _request(port, "POST", "/api/answer", {"session": sid, "trial": trial, "answer": "fake",
                                                                    "rt_ms": 400})
            assert status == 200, data
        status, data = _request(port, "POST", "/api/answer", {"session": sid, "trial": 0, "answer": "real",
                                                                "rt_ms": 300})
        assert status == 200 and json.loads(data) == {"saved": True, "repeat": True}
        assert _request(port, "POST", "/api/answer", {"session": sid, "trial": 1, "answer": "fake",
                                                      "rt_ms": 1})[0] == 409
        other = json.loads(_request(port, "POST", "/api/session", {})[1])["session"]
    lines = (fresh_study.folder / "answers" / f"{sid}.jsonl").read_text().splitlines()
    saved = []
    for line in lines:
        with contextlib.suppress(json.JSONDecodeError):
            saved.append(json.loads(line))
    answers = [a for a in saved if a["type"] == "answer"]
    assert [a["trial"] for a in answers] == list(range(fresh_study.n_images))
    assert [a["answer"] for a in answers] == ["real"] * 3 + ["fake"] * (fresh_study.n_images - 3)
    head = json.loads((fresh_study.folder / "answers" / f"{other}.jsonl").read_text().splitlines()[0])
    assert head["type"] == "session" and head["participant"] == 1
    assert summarize(fresh_study.folder)["answers"] == fresh_study.n_images


def test_cross_origin_or_non_json_requests_are_refused(fresh_study):
    """300 cross-origin text/plain session creations (what any web page can send) make no
    session; so do other origins, other Content-Types and a DNS-rebound Host. The page's own
    requests (same origin, JSON) pass."""
    with _serving(fresh_study) as (port, _):
        statuses = Counter(_request(port, "POST", "/api/session", b"{}", {"Content-Type": "text/plain",
                                                                         "Origin": "http://evil.example"})[0]
                           for _ in range(300))
        assert set(statuses) <= {403, 415} and sum(statuses.values()) == 300
        for headers in ({"Content-Type": "text/plain"},
                        {"Content-Type": "application/x-www-form-urlencoded"},
                        {"Content-Type": "multipart/form-data; boundary=x"},
                        {"Origin": "http://evil.example"},
                        {"Origin": "null"},
                        {"Origin": f"http://127.0.0.1:{port + 1}"},
                        {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"},
                        {"Host": f"evil.example:{port}"}):
            status, _ = _request(port, "POST", "/api/session", {}, headers)
            assert status in (403, 415), headers
        assert _request(port, "GET", "/", headers={"Host": f"evil.example:{port}"})[0] == 403
        assert list((fresh_study.folder / "answers").iterdir()) == []
        for headers in ({}, {"Origin": f"http://127.0.0.1:{port}"},
                        {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"},
                        {"Content-Type": "application/json; charset=utf-8"}):
            assert _request(port, "POST", "/api/session", {}, headers)[0] == 200, headers
    assert len(list((fresh_study.folder / "answers").iterdir())) == 4


def test_sessions_per_study_are_bounded_across_restarts(fresh_study):
    """A study takes at most --max-sessions sessions, counting those of earlier runs; the ones it
    has keep working."""
    with _serving(fresh_study, max_sessions=3) as (port, _):
        sids = [json.loads(_request(port, "POST", "/api/session", {})[1])["session"] for _ in range(3)]
        status, data = _request(port, "POST", "/api/session", {})
        assert status == 403 and "--max-sessions" in json.loads(data)["error"]
    with _serving(open_study(fresh_study.folder), max_sessions=3) as (port, _):
        assert _request(port, "POST", "/api/session", {})[0] == 403
        assert _request(port, "POST", "/api/answer", {"session": sids[2], "trial": 0, "answer": "real",
                                                      "rt_ms": 5})[0] == 200
    assert len(list((fresh_study.folder / "answers").iterdir())) == 3


def _until_closed(sock, seconds):
    """What the server sends until it closes the connection, and whether it did within ``seconds``."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, socket.timeout):
        return data, False
    except ConnectionError:
        pass
    return data, True


@pytest.mark.slow
def test_a_stalled_connection_is_closed_after_its_timeout(fresh_study):
    """A connection that sends nothing, or half a request, is closed after the server's timeout
    (by default some seconds, not never)."""
    with _serving(fresh_study) as (port, server):
        assert 0 < server.connection_timeout <= 60
        server.connection_timeout = 0.5
        for sent in (b"", b"GET / HTTP/1.1\r\n",
                     b"POST /api/answer HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 90\r\n\r\n{"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(sent)
                start = time.monotonic()
                _, closed = _until_closed(s, 5)
                assert closed and time.monotonic() - start < 4, sent


@pytest.mark.slow
def test_no_request_prints_a_traceback(fresh_study, capfd):
    """Malformed, huge, truncated, stalled, reset and odd requests get a status or a closed
    connection; the server's console shows no traceback, and the server keeps working."""
    (fresh_study.folder / "stimuli" / fresh_study.stimulus_file(1, "original")).unlink()  # a stimulus gone
    with _serving(fresh_study) as (port, server):
        server.connection_timeout = 0.5
        sid = json.loads(_request(port, "POST", "/api/session", {})[1])["session"]
        huge = ('{"session": "%s", "trial": 0, "answer": "real", "rt_ms": 1%s}' % (sid, "0" * 400)).encode()
        assert _request(port, "POST", "/api/answer", huge)[0] == 400
        assert _request(port, "POST", "/api/session", b"[" * 3000)[0] == 400  # nested past the recursion limit
        assert _request(port, "POST", "/api/answer", b"\xff\xfe{")[0] == 400
        assert _request(port, "GET", "/img/" + fresh_study.stimulus_file(1, "original"))[0] in (404, 500)
        assert _request(port, "GET", "/img/%ff%00")[0] == 404
        head = f"POST /api/answer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        for raw in (head + "Content-Length: 90\r\n\r\n{\"session\"",  # then stalls
                    head + "Content-Length: abc\r\n\r\n{}",
                    head + "Content-Length: -5\r\n\r\n{}",
                    head + "Content-Length: 99999999\r\n\r\n{}",
                    "HELLO\r\n\r\n", "GET /" + "a" * 70000 + " HTTP/1.1\r\n\r\n",
                    "GET / HTTP/1.1\r\n" + "X: y\r\n" * 200 + "\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(raw.encode())
                assert _until_closed(s, 5)[1], raw[:60]
        for path in ("/", "/img/" + fresh_study.stimulus_file(0, "original")):  # hung up on mid-reply
            for _ in range(5):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()  # a reset
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # half a body, then gone
            s.sendall((head + "Content-Length: 90\r\n\r\n{").encode())
        time.sleep(0.8)
        assert _request(port, "POST", "/api/answer", {"session": sid, "trial": 0, "answer": "real",
                                                      "rt_ms": 10})[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err


def test_out_of_range_options_are_one_line_errors(photos, tmp_path, monkeypatch):
    """--seconds nan/inf/-1, --port 70000/-1, --limit -1 and --max-sessions 0 exit 2 with one line
    naming the option, before any work; the Python API refuses them too."""
    from colorkit.front.turing import server as turing_server

    monkeypatch.setattr(turing_server.StudyServer, "serve_forever",
                        lambda self, *a, **k: pytest.fail("a refused option was served"))
    for option, value in (("--seconds", "nan"), ("--seconds", "inf"), ("--seconds", "-1"), ("--port", "70000"),
                          ("--port", "-1"), ("--limit", "-1"), ("--max-sessions", "0")):
        line = one_line_error(invoke(["turing", MODEL, "--images", photos, "--out", tmp_path / "s",
                                      option, value]))
        assert option in line, line
        assert not (tmp_path / "s").exists()
    with pytest.raises(UsageError, match="--seconds"):
        create_study([MODEL], str(photos), tmp_path / "s", registry=build_registry(), seconds=math.nan)
    with pytest.raises(UsageError, match="--limit"):
        create_study([MODEL], str(photos), tmp_path / "s", registry=build_registry(), limit=-1)
    with pytest.raises(UsageError, match="--port"):
        make_server(None, "127.0.0.1", 70000)
    assert not (tmp_path / "s").exists()


# --- the page in a real browser (Debian's chromium + chromedriver, over WebDriver's HTTP API) ---

CHROMEDRIVER, CHROMIUM = "/usr/bin/chromedriver", "/usr/bin/chromium"


class WebDriver:
    """Just enough of the W3C WebDriver protocol, over the standard library's HTTP client."""

    def __init__(self, port: int, profile: Path) -> None:
        self.port = port
        caps = {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=900,800", f"--user-data-dir={profile}"]}}
        self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]

    def _call(self, method: str, path: str, body: dict | None = None):
        status, data = _request(self.port, method, path, body if body is not None else ({} if method == "POST" else None))
        value = json.loads(data)["value"]
        assert status == 200, value
        return value

    def go(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def js(self, script: str):
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": []})

    def key(self, key: str) -> None:
        self._call("POST", f"/session/{self.session}/actions", {"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]})

    def wait(self, script: str, timeout: float = 20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(script)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for: {script}")

    def click(self, css: str) -> None:
        element = self._call("POST", f"/session/{self.session}/element", {"using": "css selector", "value": css})
        self._call("POST", f"/session/{self.session}/element/{next(iter(element.values()))}/click", {})

    def screenshot(self, path: Path) -> None:
        import base64

        path.write_bytes(base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot")))

    def quit(self) -> None:
        self._call("DELETE", f"/session/{self.session}")


@pytest.fixture
def webdriver():
    """chromedriver and the browser it starts keep their profile and temporary folders (TMPDIR) in
    one folder removed afterwards, so a test run leaves nothing of theirs in /tmp. The folder has a
    short path: the browser's sockets live there, and a Unix socket's path is at most 107 bytes."""
    if not (os.access(CHROMEDRIVER, os.X_OK) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no browser here ({CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver); "
                    "the HTTP-level tests above still ran")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scratch_dir = tempfile.TemporaryDirectory(prefix="colorkit-browser-", ignore_cleanup_errors=True)
    scratch = Path(scratch_dir.name)
    (scratch / "tmp").mkdir()
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "TMPDIR": str(scratch / "tmp")})
    try:
        deadline = time.time() + 30
        while True:
            try:
                if _request(port, "GET", "/status")[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "chromedriver did not start"
            time.sleep(0.1)
        browser = WebDriver(port, scratch / "profile")
        yield browser
        browser.quit()
    finally:
        driver.terminate()
        driver.wait(timeout=10)
        scratch_dir.cleanup()


@pytest.mark.slow
def test_ten_photos_answered_with_keyboard_and_buttons_in_a_real_browser(webdriver, photos, tmp_path):
    out = tmp_path / "study"
    proc, port = _start_cli([MODEL, "--images", photos, "--out", out, "--size", "128", "--seed", "1"])
    try:
        webdriver.go(f"http://127.0.0.1:{port}/")
        assert "You will see 10 photos" in webdriver.js("return document.body.innerText")
        webdriver.key("\ue007")  # Enter starts
        answers = []
        for k in range(10):
            webdriver.wait(f"return document.getElementById('progress').textContent === 'Image {k + 1} of 10' "
                           "&& !document.getElementById('real').disabled")
            if k == 3 and os.environ.get("COLORKIT_TURING_SCREENSHOT"):
                webdriver.screenshot(Path(os.environ["COLORKIT_TURING_SCREENSHOT"]))
            answer = "real" if k % 3 == 0 else "fake"
            if k < 8:
                webdriver.key("r" if answer == "real" else "f")
            else:  # the last two with the buttons
                webdriver.click(f"#{answer}")
            answers.append(answer)
        webdriver.wait("return !document.getElementById('done').hidden")
        assert "your 10 answers are saved" in webdriver.js("return document.body.innerText")
    finally:
        proc.send_signal(signal.SIGTERM)  # stops as Ctrl+C does (SIGINT is ignored under nohup)
        proc.wait(timeout=30)
    assert proc.returncode == 0 and "prints the results" in proc.stderr.read()
    saved = [json.loads(line) for f in (out / "answers").glob("*.jsonl") for line in f.read_text().splitlines()]
    saved = [a for a in saved if a["type"] == "answer"]
    assert [a["answer"] for a in saved] == answers and all(a["rt_ms"] > 0 for a in saved)
    model_answers = [a for a in saved if a["condition"] == MODEL]
    fooled = sum(a["answer"] == "real" for a in model_answers)
    result = invoke(["turing", "--results", out])
    assert result.exit_code == 0
    low, high = wilson(fooled, len(model_answers))
    assert (f"{MODEL}: fooling rate {100 * fooled / len(model_answers):.1f}% (95% CI {100 * low:.1f}-"
            f"{100 * high:.1f}%, {fooled} of {len(model_answers)})") in result.output


@pytest.mark.slow
def test_seconds_hides_each_photo_after_its_time_in_a_real_browser(webdriver, photos, tmp_path):
    out = tmp_path / "study"
    proc, port = _start_cli([MODEL, "--images", photos, "--out", out, "--size", "64", "--limit", "2",
                             "--seconds", "0.5"])
    try:
        webdriver.go(f"http://127.0.0.1:{port}/")
        assert "each for 0.5 seconds" in webdriver.js("return document.body.innerText")
        webdriver.click("#start")
        webdriver.wait("return !document.getElementById('real').disabled")
        assert webdriver.js("return document.getElementById('photo').style.visibility") == "visible"
        webdriver.wait("return document.getElementById('photo').style.visibility === 'hidden'", timeout=5)
        webdriver.key("f")  # answering after the photo is hidden still counts
        webdriver.wait("return document.getElementById('progress').textContent === 'Image 2 of 2'")
    finally:
        proc.send_signal(signal.SIGTERM)  # stops as Ctrl+C does (SIGINT is ignored under nohup)
        proc.wait(timeout=30)
    assert summarize(out)["answers"] == 1

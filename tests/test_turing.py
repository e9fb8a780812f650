"""The visual Turing test (``colorkit turing``): balanced plans, the study directory, the HTTP
server (answers saved at once, nothing outside the study served), results with confidence
intervals, one-line errors, and the page driven in a real headless browser."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import invoke, one_line_error
from colorkit.kernel.errors import UsageError
from colorkit.kernel.registry import build_registry
from colorkit.front.turing import Study, create_study, open_study, summarize, wilson
from colorkit.front.turing_server import make_server

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


def _request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
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
    for bad in ({"session": session["session"], "trial": 0, "answer": "real", "rt_ms": 1},  # answered already
                {"session": session["session"], "trial": 99, "answer": "real", "rt_ms": 1},
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

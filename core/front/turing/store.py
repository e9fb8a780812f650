"""The participant sessions of a served Turing study, kept on disk so that no answer is lost.

A session is its file ``answers/SESSION.jsonl``: the first line (the participant's number and
plan) is written whole with colorkit's atomic writer before the page hears of the session, and
each answer is appended as one line, flushed to disk, before the page is told it is saved. A
server started on the study directory reads these files back (:func:`load_sessions`), so the
sessions in progress go on where they were.

Answers are idempotent per ``(session, trial)``: the same answer sent again (a retry whose
acknowledgment was lost) is acknowledged and not stored twice; another answer to an answered
trial is refused. A request is checked in full (:func:`check_answer`) before anything changes,
and a trial counts as answered only once its line is on disk.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from colorkit.front.turing.study import Study, append_line, now_iso
from colorkit.kernel.errors import ColorkitError
from colorkit.kernel.files import atomic_write_bytes

#: The longest response time taken, in milliseconds (a day): more is a broken client.
MAX_RT_MS = 86_400_000
#: Sessions one study takes by default (``colorkit turing --max-sessions``).
MAX_SESSIONS = 1000
ANSWERS = ("real", "fake")


class Refused(Exception):
    """A request the store does not take: the HTTP status and a one-line reason for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message


@dataclass
class Session:
    """One participant's session: the plan, the answers on disk so far (trial -> answer)."""

    sid: str
    participant: int
    plan: list[dict[str, Any]]
    answered: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def check_answer(body: dict[str, Any]) -> str | None:
    """Why an answer's body is refused, or ``None``: ``session`` a string, ``trial`` an integer
    (a boolean is not one), ``answer`` ``"real"`` or ``"fake"``, ``rt_ms`` a finite number of
    milliseconds from 0 to :data:`MAX_RT_MS` (integers of any size are compared, never converted)."""
    sid, trial, answer, rt = body.get("session"), body.get("trial"), body.get("answer"), body.get("rt_ms")
    if not isinstance(sid, str):
        return "'session' must be the session's id, a string"
    if type(trial) is not int:
        return "'trial' must be an integer"
    if not isinstance(answer, str) or answer not in ANSWERS:
        return "'answer' must be 'real' or 'fake'"
    if type(rt) not in (int, float) or (isinstance(rt, float) and not math.isfinite(rt)):
        return "'rt_ms' must be a finite number of milliseconds"
    if not 0 <= rt <= MAX_RT_MS:
        return f"'rt_ms' must be from 0 to {MAX_RT_MS} milliseconds"
    return None


def _records(path: Path) -> list[dict[str, Any]]:
    """The whole JSON lines of a session file; a line cut short by a kill is left out, and a
    newline is added after it so that the next answer gets a line of its own."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with contextlib.suppress(OSError):  # a read-only study is read all the same
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
    records = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _read_session(path: Path, study: Study) -> Session | None:
    """The session a file holds, or ``None`` when its first line is not a session of this study."""
    records = _records(path)
    head = records[0] if records else {}
    participant = head.get("participant")
    if head.get("type") != "session" or head.get("session") != path.stem or type(participant) is not int \
            or participant < 0:
        return None
    session = Session(path.stem, participant, study.plan(participant))
    for record in records[1:]:
        trial, answer = record.get("trial"), record.get("answer")
        if (record.get("type") == "answer" and type(trial) is int and 0 <= trial < len(session.plan)
                and answer in ANSWERS):
            session.answered.setdefault(trial, answer)
    return session


def load_sessions(study: Study) -> tuple[dict[str, Session], int]:
    """The sessions of the study's earlier runs, by id, and the number of session files (the
    next participant's number: every file counts, a damaged one included)."""
    files = sorted((study.folder / "answers").glob("*.jsonl"))
    sessions: dict[str, Session] = {}
    numbers = [len(files) - 1]
    for path in files:
        try:
            session = _read_session(path, study)
        except OSError:
            continue
        if session is not None:
            sessions[session.sid] = session
            numbers.append(session.participant)
    return sessions, max(numbers) + 1


class SessionStore:
    """The study's sessions: made, answered and read back from ``STUDY_DIR/answers``."""

    def __init__(self, study: Study, max_sessions: int = MAX_SESSIONS) -> None:
        self.study = study
        self.max_sessions = max_sessions
        self.lock = threading.Lock()  # guards the sessions and the participant numbers
        self.sessions, self.next_participant = load_sessions(study)

    def _path(self, sid: str) -> Path:
        return self.study.folder / "answers" / f"{sid}.jsonl"

    def create(self) -> dict[str, Any]:
        """A new session, on disk before it is returned: its id and its trials as image URLs.
        Raises :class:`Refused` when the study has all its sessions or the disk refuses."""
        with self.lock:
            if self.next_participant >= self.max_sessions:
                raise Refused(HTTPStatus.FORBIDDEN, f"this study has its {self.max_sessions} sessions; "
                                                    "its organiser can allow more with --max-sessions")
            participant, sid = self.next_participant, secrets.token_hex(8)
            plan = self.study.plan(participant)
            head = {"type": "session", "session": sid, "participant": participant, "started": now_iso(),
                    "plan": [{k: t[k] for k in ("trial", "image", "condition")} for t in plan]}
            try:
                atomic_write_bytes(self._path(sid), (json.dumps(head, allow_nan=False) + "\n").encode("utf-8"))
            except (OSError, ColorkitError):
                raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, "the server could not save a new session; "
                                                              "try again") from None
            self.next_participant += 1
            self.sessions[sid] = Session(sid, participant, plan)
        return {"session": sid, "trials": [{"trial": t["trial"], "url": f"/img/{t['file']}"} for t in plan]}

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """Store one answer; ``{"saved": True}``, with ``"repeat": True`` when the trial had
        this answer already. Raises :class:`Refused` (nothing changed) otherwise."""
        problem = check_answer(body)
        if problem is not None:
            raise Refused(HTTPStatus.BAD_REQUEST, problem)
        sid, trial, answer = body["session"], body["trial"], body["answer"]
        with self.lock:
            session = self.sessions.get(sid)
        if session is None:
            raise Refused(HTTPStatus.BAD_REQUEST, "unknown session; start again from the page")
        if not 0 <= trial < len(session.plan):
            raise Refused(HTTPStatus.BAD_REQUEST, f"'trial' must be from 0 to {len(session.plan) - 1}")
        with session.lock:
            earlier = session.answered.get(trial)
            if earlier == answer:
                return {"saved": True, "repeat": True}
            if earlier is not None:
                raise Refused(HTTPStatus.CONFLICT, f"trial {trial} was answered '{earlier}' already; "
                                                   "an answer is not changed")
            t = session.plan[trial]
            record = {"type": "answer", "session": sid, "participant": session.participant, "trial": trial,
                      "image": t["image"], "source": self.study.config["images"][t["image"]],
                      "condition": t["condition"], "answer": answer, "rt_ms": round(float(body["rt_ms"]), 1),
                      "time": now_iso()}
            try:
                append_line(self._path(sid), record)
            except OSError:
                raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, "the answer could not be saved; try again") from None
            session.answered[trial] = answer
        return {"saved": True}

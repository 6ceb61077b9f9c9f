"""``audiobench listen RUN_DIR``: a MUSHRA-style listening test served on 127.0.0.1 (Flask).

Why Flask and not pyMUSHRA: pyMUSHRA 0.5 (the Python webMUSHRA server) serves webMUSHRA's JavaScript
from a source folder the user must download (not in the package, so nothing to run offline), stores a
whole session only when it ends (TinyDB JSON: no per-trial durability, no resume), binds 0.0.0.0 with
Flask's debugger on, and pulls IPython, seaborn and statsmodels. It is itself a small Flask app; this is
one too, with the same page structure as webMUSHRA's MUSHRA page (reference, hidden reference, anchor,
one 0-100 slider per condition) and the paper's instructions.

Endpoints (JSON in and out; every error is a 4xx with ``{"error": message}`` and stores nothing):

- ``GET /`` the page; ``GET /api/test?listener=NAME`` the listener's trials in their order, which are done,
  and the instructions; ``GET /audio/<trial>/<k>?listener=NAME`` the k-th stimulus of that listener's order
  (``k = ref`` the open reference). Files are looked up in the run's trial table, never built from the URL.
- ``POST /api/rate`` ``{"listener": str, "trial": str, "scores": [int 0..100, one per slider]}``: one
  listener's rating of one trial, written in one SQLite transaction (WAL, ``synchronous=FULL``) before
  the reply; a second rating of the same (listener, trial) is refused (409).

Ratings live in ``RUN_DIR/listening.sqlite``, table ``ratings(listener, trial, condition, sample_id,
stimulus, score, position, created)``, one row per slider; ``stimulus`` is the method's row label,
``reference`` or ``anchor``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from audiobench.listen.trials import INSTRUCTIONS, Trial, load_trials, trial_order

DB_NAME = "listening.sqlite"
PAGE = Path(__file__).with_name("page.html")
LISTENER = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS ratings (
    listener TEXT NOT NULL,
    trial TEXT NOT NULL,
    condition TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    stimulus TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    position INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (listener, trial, stimulus)
);
CREATE TABLE IF NOT EXISTS trials (
    trial TEXT PRIMARY KEY,
    definition TEXT NOT NULL
);
"""


class BadRequest(Exception):
    """A request the server refuses: ``status`` (4xx) and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def connect(db: Path) -> sqlite3.Connection:
    """A connection to the ratings database (WAL journal, full sync: a rating acknowledged is on disk)."""
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def init_db(db: Path, trials: list[Trial]) -> None:
    """Create the tables and record the trial definitions; raises :class:`audiobench.kernel.errors.AudiobenchError`
    when the database holds another definition of a trial (the run changed after ratings were given)."""
    from audiobench.kernel.errors import AudiobenchError

    conn = connect(db)
    try:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        for t in trials:
            definition = json.dumps({"condition": t.condition, "sample_id": t.sample_id, "stimuli": t.stimuli},
                                    sort_keys=True)
            row = conn.execute("SELECT definition FROM trials WHERE trial = ?", (t.id,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO trials VALUES (?, ?)", (t.id, definition))
            elif row[0] != definition:
                conn.execute("ROLLBACK")
                raise AudiobenchError(f"{db}: trial {t.id} was rated with other stimuli (the run changed); "
                                      "move the database away to start a new test")
        conn.execute("COMMIT")
    finally:
        conn.close()


def listener_name(value: Any) -> str | None:
    """The listener's key: the name NFC-normalised and stripped (so one person typing "Zoë" either way
    is one listener); None when it is not a name of 1 to 64 printable characters with a visible one,
    free of control and format characters (Unicode Cc, Cf: zero-width spaces, bidi overrides)."""
    if not isinstance(value, str):
        return None
    name = unicodedata.normalize("NFC", value).strip()
    if not LISTENER.match(name or "\x00") or any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        return None
    if not any(not c.isspace() for c in name):
        return None
    return name


def _listener(value: Any) -> str:
    name = listener_name(value)
    if name is None:
        raise BadRequest(400, "listener must be a name of 1 to 64 printable characters")
    return name


def create_app(run_dir: str | Path, methods: list[str] | None = None, per_page: int | None = None) -> Flask:
    """The Flask app of ``run_dir``'s listening test (creates ``RUN_DIR/listening.sqlite``); ``methods`` and
    ``per_page`` choose the rows rated and how many share a page (:func:`~audiobench.listen.trials.select_stimuli`)."""
    run = Path(run_dir).resolve()
    trials = load_trials(run, methods, per_page)
    by_id = {t.id: t for t in trials}
    db = run / DB_NAME
    init_db(db, trials)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024

    @app.errorhandler(BadRequest)
    def _bad(exc: BadRequest):  # noqa: ANN202
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(404)
    def _missing(exc: Exception):  # noqa: ANN202
        return jsonify(error="not found"), 404

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):  # noqa: ANN202  (405, 413, ...: JSON as every other error of the API)
        return jsonify(error=exc.description or exc.name), exc.code

    @app.before_request
    def _local_only() -> None:  # a page of another site resolving its name to 127.0.0.1 (DNS rebinding) is refused
        if request.host.rsplit(":", 1)[0] not in ("127.0.0.1", "localhost"):
            raise BadRequest(403, "this server answers requests for 127.0.0.1 only")

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Content-Security-Policy"] = "default-src 'self'; script-src 'self' 'unsafe-inline'; " \
                                                  "style-src 'self' 'unsafe-inline'; media-src 'self'"
        return resp

    def done_trials(conn: sqlite3.Connection, listener: str) -> set[str]:
        return {r[0] for r in conn.execute("SELECT DISTINCT trial FROM ratings WHERE listener = ?", (listener,))}

    @app.get("/")
    def page() -> Response:
        return Response(PAGE.read_text(encoding="utf-8"), mimetype="text/html")

    @app.get("/api/test")
    def test() -> Response:
        listener = _listener(request.args.get("listener"))
        conn = connect(db)
        try:
            done = done_trials(conn, listener)
        finally:
            conn.close()
        return jsonify(
            listener=listener, instructions=list(INSTRUCTIONS),
            trials=[{"id": t.id, "predicted": t.predicted, "condition": t.condition_label,
                     "n": len(t.stimuli), "done": t.id in done} for t in trial_order(trials, listener)],
        )

    @app.get("/audio/<trial>/<k>")
    def audio(trial: str, k: str) -> Response:
        listener = _listener(request.args.get("listener"))
        t = by_id.get(trial)
        if t is None:
            abort(404)
        order = t.order(listener)
        if k == "ref":
            rel = t.reference
        elif k.isdigit() and int(k) < len(order):
            rel = t.stimuli[order[int(k)]]
        else:
            abort(404)
        path = (run / rel).resolve()
        if not path.is_relative_to(run) or not path.is_file():  # the table only names files of the run
            abort(404)
        return send_file(path, mimetype="audio/wav", max_age=0)

    @app.post("/api/rate")
    def rate() -> Response:
        if not request.is_json:
            raise BadRequest(415, "send the rating as application/json")
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or set(body) != {"listener", "trial", "scores"}:
            raise BadRequest(400, "a rating is {listener, trial, scores}")
        listener = _listener(body["listener"])
        t = by_id.get(body["trial"]) if isinstance(body["trial"], str) else None
        if t is None:
            raise BadRequest(404, "no such trial")
        scores = body["scores"]
        order = t.order(listener)
        if not isinstance(scores, list) or len(scores) != len(order):
            raise BadRequest(400, f"scores must be a list of {len(order)} ratings, one per slider")
        if not all(type(s) is int and 0 <= s <= 100 for s in scores):
            raise BadRequest(422, "every score must be an integer from 0 to 100")
        now = time.time()
        rows = [(listener, t.id, t.condition, t.sample_id, name, s, k, now)
                for k, (name, s) in enumerate(zip(order, scores, strict=True))]
        conn = connect(db)
        try:
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("SELECT 1 FROM ratings WHERE listener = ? AND trial = ? LIMIT 1", (listener, t.id)).fetchone():
                conn.execute("ROLLBACK")
                raise BadRequest(409, f"{listener} has already rated trial {t.id}")
            conn.executemany("INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return jsonify(stored=len(rows))

    return app


def serve(run_dir: str | Path, port: int = 8765, listener: str | None = None, methods: list[str] | None = None,
          per_page: int | None = None) -> None:
    """Serve ``run_dir``'s listening test on http://127.0.0.1:PORT/ until interrupted (Ctrl-C)."""
    from urllib.parse import quote

    from werkzeug.serving import make_server

    from audiobench.kernel.errors import AudiobenchError

    if not 0 <= port <= 65535:
        raise AudiobenchError(f"--port must be from 0 to 65535, got {port}")
    if listener is not None and listener_name(listener) is None:
        raise AudiobenchError("--listener must be a name of 1 to 64 printable characters")
    listener = listener_name(listener) if listener is not None else None
    app = create_app(run_dir, methods, per_page)
    import werkzeug.serving

    werkzeug.serving._log_add_style = sys.stderr.isatty()  # request-log colours on a terminal only, never in a log file
    try:
        server = make_server("127.0.0.1", port, app, threaded=True)
    except OSError as exc:
        raise AudiobenchError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc} (try another --port, or 0)") from None
    url = f"http://127.0.0.1:{server.server_port}/" + (f"?listener={quote(listener)}" if listener else "")
    print(f"listening test of {run_dir}: open {url}  (ratings in {Path(run_dir) / DB_NAME}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()

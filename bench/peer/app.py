"""Comparison peer for Vigil's ingest gateway: Flask, one MariaDB INSERT per EEG chunk.

Written the way a first version usually is: validate, look the token up, insert, answer.
No bus, no batching, no caches. See README.md.
"""

import hashlib
import json
import math
import os
import sys
import time
import uuid
from array import array
from urllib.parse import unquote, urlsplit

import pymysql
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

NAN = float("nan")
I64_MAX = 2**63 - 1
MAX_SAMPLE_RATE_HZ = 65536.0  # Vigil's default record limit
MAX_LABEL_LEN = 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_eeg_chunks (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  patient_id VARCHAR(64) NOT NULL,
  device_id VARCHAR(64) NOT NULL,
  stream_id CHAR(36) NOT NULL,
  seq BIGINT NOT NULL,
  start_ns BIGINT NOT NULL,
  end_ns BIGINT NOT NULL,
  received_ns BIGINT NOT NULL,
  sample_rate_hz DOUBLE NOT NULL,
  channels TEXT NOT NULL,
  n_samples INTEGER NOT NULL,
  samples LONGBLOB NOT NULL,
  UNIQUE (stream_id, seq)
)"""

DEVICE_BY_TOKEN = (
    "SELECT device_id, patient_id, sample_rate_hz, channels, revoked_at"
    " FROM devices WHERE token_sha256 = %s"
)

INSERT_CHUNK = (
    "INSERT INTO peer_eeg_chunks (patient_id, device_id, stream_id, seq, start_ns, end_ns,"
    " received_ns, sample_rate_hz, channels, n_samples, samples)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)

ER_DUP_ENTRY = 1062

app = Flask(__name__)
# Same body limit as Vigil's default max_body_bytes; larger bodies get 413.
app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024


# --- database: one connection per worker process (sync workers serve one request at a time)


def _connect_args():
    url = os.environ.get("PEER_DATABASE_URL")
    if not url:
        raise RuntimeError("PEER_DATABASE_URL is not set (mysql://user:password@host:port/db)")
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb") or not parts.path.strip("/"):
        raise RuntimeError("PEER_DATABASE_URL must look like mysql://user:password@host:port/db")
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.strip("/")),
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": 5,
        "read_timeout": 30,
        "write_timeout": 30,
    }


_conn = None


def _execute(sql, args=None):
    """Runs one statement and returns its first row, if any. Reconnects once if the link is gone."""
    global _conn
    for attempt in (1, 2):
        try:
            if _conn is None:
                _conn = pymysql.connect(**_connect_args())
            with _conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchone()
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
            # Server restart, idle timeout or a broken socket: drop it and try a fresh one.
            if _conn is not None:
                try:
                    _conn.close()
                except Exception:
                    pass
                _conn = None
            if attempt == 2:
                raise


def ensure_schema():
    # Runs in the gunicorn master: a connection of its own, closed before workers fork.
    conn = pymysql.connect(**_connect_args())
    try:
        with conn.cursor() as cur:
            cur.execute(SCHEMA)
    finally:
        conn.close()


# --- errors


class Problem(Exception):
    def __init__(self, status, detail, headers=None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 415: "Unsupported Media Type",
           422: "Unprocessable Content", 500: "Internal Server Error", 503: "Service Unavailable"}


def _problem(status, detail, title=None, headers=None):
    body = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"),
            "status": status, "detail": detail}
    return Response(json.dumps(body), status=status, headers=headers,
                    content_type="application/problem+json")


@app.errorhandler(Problem)
def _on_problem(e):
    return _problem(e.status, e.detail, headers=e.headers)


@app.errorhandler(HTTPException)
def _on_http_error(e):
    # 404, 405, 413 and friends, in the same problem format.
    headers = [(k, v) for k, v in e.get_headers() if k.lower() != "content-type"]
    return _problem(e.code, e.description, title=e.name, headers=headers)


@app.errorhandler(pymysql.err.OperationalError)
@app.errorhandler(pymysql.err.InterfaceError)
def _on_db_down(e):
    app.logger.error("database unavailable: %r", e)
    return _problem(503, "the database is unavailable; retry later", headers={"Retry-After": "2"})


@app.errorhandler(Exception)
def _on_bug(e):
    app.logger.exception("unhandled error")
    return _problem(500, "internal error")


# --- validation


def _field(body, name, kinds, what):
    value = body.get(name)
    # bool is an int subclass, but JSON true is not a number.
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise Problem(400, f"field `{name}`: expected {what}")
    return value


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _parse_body():
    try:
        body = json.loads(request.get_data(cache=False), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise Problem(400, f"malformed JSON: {e}")
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object")
    return body


def _pack_samples(rows, n_channels):
    """Returns (samples per channel, little-endian float32 bytes, channel-major)."""
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise Problem(400, "field `samples`: expected a list of lists of numbers")
    if len(rows) != n_channels:
        raise Problem(422, f"{len(rows)} sample rows for {n_channels} channels")
    n = len(rows[0])
    if n == 0:
        raise Problem(422, "no samples")
    out = array("f")
    for c, row in enumerate(rows):
        if len(row) != n:
            raise Problem(422, f"ragged channels: row {c} has {len(row)} samples, expected {n}")
        start = len(out)
        try:
            for x in row:
                if x is None:
                    x = NAN  # missing sample
                elif type(x) is not float and type(x) is not int:
                    raise Problem(400, f"field `samples`: row {c} holds a non-number")
                out.append(x)
        except OverflowError:
            raise Problem(422, f"sample out of range in channel {c}")
        # Values beyond float32 range became inf, as they do in Vigil's decoder; both are refused.
        if any(map(math.isinf, out[start:])):
            raise Problem(422, f"infinite sample in channel {c}")
    if sys.byteorder != "little":
        out.byteswap()
    return n, out.tobytes()


def _device(token):
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    row = _execute(DEVICE_BY_TOKEN, (digest,))
    if row is None or row[4] is not None:
        raise Problem(401, "unknown or revoked token", {"WWW-Authenticate": "Bearer"})
    return row


# --- routes


@app.get("/healthz")
def healthz():
    return Response("ok", content_type="text/plain")


@app.post("/v1/eeg")
def ingest_eeg():
    # The token is checked before the body is read, as in Vigil.
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    device_id, patient_id, reg_rate, reg_channels, _ = _device(token.strip())

    if request.mimetype != "application/json":
        raise Problem(415, f"content type {request.mimetype or 'none'!r} is not supported: use application/json")
    body = _parse_body()

    rec_patient = _field(body, "patient_id", str, "a string")
    rec_device = _field(body, "device_id", str, "a string")
    try:
        stream_id = str(uuid.UUID(_field(body, "stream_id", str, "a UUID string")))
    except ValueError:
        raise Problem(400, "field `stream_id`: expected a UUID string")
    seq = _field(body, "seq", int, "an integer")
    if not 0 <= seq <= I64_MAX:
        raise Problem(400, "field `seq`: out of range")
    start_ns = _field(body, "start_ns", int, "an integer")
    if abs(start_ns) > I64_MAX:
        raise Problem(400, "field `start_ns`: out of range")
    rate = float(_field(body, "sample_rate_hz", (int, float), "a number"))
    channels = _field(body, "channels", list, "a list of strings")
    if not all(isinstance(ch, str) for ch in channels):
        raise Problem(400, "field `channels`: expected a list of strings")

    if start_ns < 0:
        raise Problem(422, "start_ns is negative")
    if not (math.isfinite(rate) and 0 < rate <= MAX_SAMPLE_RATE_HZ):
        raise Problem(422, f"sample_rate_hz must be in (0, {MAX_SAMPLE_RATE_HZ:g}]")
    if not channels:
        raise Problem(422, "no channels")
    if len(set(channels)) != len(channels) or not all(0 < len(ch) <= MAX_LABEL_LEN for ch in channels):
        raise Problem(422, f"channel labels must be unique and 1..{MAX_LABEL_LEN} bytes long")
    n_samples, blob = _pack_samples(body.get("samples"), len(channels))

    if rec_patient != patient_id or rec_device != device_id:
        raise Problem(403, "patient_id or device_id does not match the token's device")
    if reg_rate is not None and reg_rate != rate:
        raise Problem(422, f"sample_rate_hz {rate:g} differs from the registered {reg_rate:g}")
    if reg_channels is not None and json.loads(reg_channels) != channels:
        raise Problem(422, "channels differ from the registered ones")

    end_ns = start_ns + round(n_samples * 1e9 / rate)
    try:
        _execute(INSERT_CHUNK, (patient_id, device_id, stream_id, seq, start_ns, end_ns, time.time_ns(),
                                rate, json.dumps(channels), n_samples, blob))
        status = "accepted"
    except pymysql.err.IntegrityError as e:
        if e.args[0] != ER_DUP_ENTRY:
            raise
        status = "duplicate"
    return {"stream_id": stream_id, "seq": seq, "status": status}, 202

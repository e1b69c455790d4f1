"""A stand-in OpenTimestamps calendar on loopback (POST /digest, GET /timestamp/<hex>).

POST /digest answers like a real calendar: prepend a 4-byte time, append an 8-byte tag, then a
PendingAttestation naming this server's own URL (deterministic here). GET /timestamp/<hex> replays canned
answers - by default the real alice calendar answer from the corpus, keyed by the commitment it belongs
to - and otherwise says 404 "Pending confirmation in Bitcoin blockchain", as the real calendar does.
Every request is recorded in ``requests``.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from opentimestamps.core.notary import PendingAttestation
from opentimestamps.core.op import OpAppend, OpPrepend
from opentimestamps.core.serialize import BytesSerializationContext
from opentimestamps.core.timestamp import Timestamp

from tests.paths import CORPUS
from tests.servers import Served

ANSWERS_DIR = CORPUS / "timestamps" / "opentimestamps" / "calendar-answers"
PENDING_TEXT = b"Pending confirmation in Bitcoin blockchain"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes


def corpus_answers() -> dict[bytes, bytes]:
    """The real calendar answers in the corpus, keyed by commitment (from the file names)."""
    answers: dict[bytes, bytes] = {}
    for path in sorted(Path(ANSWERS_DIR).glob("*.bin")):
        commitment = bytes.fromhex(path.stem.rsplit("-", 1)[1])
        answers[commitment] = path.read_bytes()
    return answers


class CalendarServer(Served):
    """Threaded loopback calendar; use as a context manager or call start()/stop()."""

    def __init__(self, answers: dict[bytes, bytes] | None = None, *, load_corpus: bool = True) -> None:
        self.answers: dict[bytes, bytes] = corpus_answers() if load_corpus else {}
        self.answers.update(answers or {})
        self.requests: list[Request] = []
        self.digest_status = 200  # set to e.g. 503 to make POST /digest fail
        self.redirect_to: str | None = None  # if set, GET /timestamp/... answers 302 to this base URL
        self.time_tag = b"\x57\xcf\xa5\xc4"
        self._lock = threading.Lock()

    def pending_stamp(self, digest: bytes) -> Timestamp:
        """What POST /digest returns for ``digest``: a timestamp ending in our PendingAttestation."""
        stamp = Timestamp(digest)
        commitment = stamp.ops.add(OpPrepend(self.time_tag)).ops.add(OpAppend(self._tag(digest)))
        commitment.attestations.add(PendingAttestation(self.url))
        return stamp

    def commitment_for(self, digest: bytes) -> bytes:
        """The commitment our PendingAttestation stands for (what GET /timestamp/<hex> will ask about)."""
        return self.time_tag + digest + self._tag(digest)

    def _tag(self, digest: bytes) -> bytes:
        return hashlib.sha256(self.url.encode() + digest).digest()[:8]

    def start(self) -> CalendarServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes, ctype: str = "application/octet-stream") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 4096))
                server._record("POST", self.path, body)
                if self.path.rstrip("/") != "/digest":
                    self._reply(404, b"Not found", "text/plain")
                elif server.digest_status != 200:
                    self._reply(server.digest_status, b"Calendar unavailable", "text/plain")
                elif not 1 <= len(body) <= 64:
                    self._reply(400, b"digest too long", "text/plain")
                else:
                    ctx = BytesSerializationContext()
                    server.pending_stamp(body).serialize(ctx)
                    self._reply(200, ctx.getbytes())

            def do_GET(self) -> None:
                server._record("GET", self.path, b"")
                m = re.fullmatch(r"/timestamp/([0-9a-fA-F]+)", self.path)
                if not m or len(m.group(1)) % 2:
                    self._reply(400, b"Bad request", "text/plain")
                    return
                answer = server.answers.get(bytes.fromhex(m.group(1)))
                if server.redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to.rstrip("/") + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif answer is None:
                    self._reply(404, PENDING_TEXT, "text/plain")
                else:
                    self._reply(200, answer)

        self._serve(Handler)
        return self

    def _record(self, method: str, path: str, body: bytes) -> None:
        with self._lock:
            self.requests.append(Request(method, path, body))

"""A real RFC 3161 time-stamping authority on loopback: ``openssl ts -reply`` behind a throwaway CA."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Literal

from tests.servers import LoopbackServer

Mode = Literal["ok", "garbage", "http500", "replay"]

_TSA_CONFIG = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = {dir}
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/chain.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.55555.1.1
other_policies = 1.3.6.1.4.1.55555.1.2
digests = sha256, sha384, sha512
accuracy = secs:1, millisecs:0, microsecs:0
clock_precision_digits = 0
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""

_EXTENSIONS = """\
[ v3_intermediate ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_tsa ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def _openssl(*args: str, cwd: Path, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["openssl", *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _make_pki(d: Path) -> None:
    """Root CA -> intermediate CA -> TSA signer (EC P-256), written as PEM files in ``d``."""
    (d / "ext.cnf").write_text(_EXTENSIONS)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "3650",
        "-subj",
        "/O=evidence-vault tests/CN=Throwaway Test Root CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )
    for name, subject, issuer, ext in (
        ("int", "/O=evidence-vault tests/CN=Throwaway Test Intermediate CA", "ca", "v3_intermediate"),
        ("tsa", "/O=evidence-vault tests/CN=Throwaway Test TSA", "int", "v3_tsa"),
    ):
        _openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            f"{issuer}.pem",
            "-CAkey",
            f"{issuer}.key",
            "-set_serial",
            str(int.from_bytes(os.urandom(8), "big")),
            "-days",
            "3650",
            "-extfile",
            "ext.cnf",
            "-extensions",
            ext,
            "-out",
            f"{name}.pem",
            cwd=d,
        )
    # Certificates the TSA puts into its tokens besides its own: the intermediate.
    (d / "chain.pem").write_bytes((d / "int.pem").read_bytes())
    (d / "tsaserial").write_text("01\n")
    (d / "tsa.cnf").write_text(_TSA_CONFIG.format(dir=d))


def _reissue_expired_signer(d: Path) -> None:
    """Replace the TSA certificate by one (same key, same issuer) whose validity ended yesterday."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    issuer = x509.load_pem_x509_certificate((d / "int.pem").read_bytes())
    issuer_key = serialization.load_pem_private_key((d / "int.key").read_bytes(), password=None)
    old = x509.load_pem_x509_certificate((d / "tsa.pem").read_bytes())
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(issuer.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now - timedelta(days=1))
    )
    for ext in old.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    cert = builder.sign(issuer_key, hashes.SHA256())
    (d / "tsa.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class LocalTSA:
    """An RFC 3161 TSA on 127.0.0.1 (random port) answering POSTed queries with ``openssl ts -reply``.

    ``mode`` may be changed at any time: ``"ok"`` (real replies), ``"garbage"`` (HTTP 200 with bytes that
    are no TimeStampResp), ``"http500"`` (server error), ``"replay"`` (every answer is the first reply ever
    given, as a replaying attacker would send). With ``expired_signer=True`` the TSA signs with a certificate
    that expired yesterday, so its tokens must fail verification at their genTime.
    """

    def __init__(self, mode: Mode = "ok", *, expired_signer: bool = False) -> None:
        self.mode: Mode = mode
        self.requests = 0
        self._dir = Path(tempfile.mkdtemp(prefix="ev-tsa-"))
        self._lock = threading.Lock()
        self._first_reply: bytes | None = None
        try:
            _make_pki(self._dir)
            if expired_signer:
                _reissue_expired_signer(self._dir)
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self.ca_pem: bytes = (self._dir / "ca.pem").read_bytes()
        self.intermediate_pem: bytes = (self._dir / "int.pem").read_bytes()
        self.tsa_pem: bytes = (self._dir / "tsa.pem").read_bytes()
        #: The untrusted part of the chain (TSA signer + intermediate), for ``openssl ts -verify -untrusted``.
        self.chain_pem: bytes = self.tsa_pem + self.intermediate_pem
        self.ca_path = self._dir / "ca.pem"
        self.chain_path = self._dir / "untrusted.pem"
        self.chain_path.write_bytes(self.chain_pem)
        self._server = LoopbackServer(self._handler_class())
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-tsa", daemon=True)
        self._thread.start()
        self._stopped = False

    def reply(self, query: bytes) -> bytes:
        """Answer one DER TimeStampReq with a DER TimeStampResp, exactly as ``openssl ts -reply`` does."""
        with self._lock:  # openssl updates the serial file: one reply at a time
            qfile = self._dir / "query.tsq"
            qfile.write_bytes(query)
            d = self._dir
            return _openssl(
                "ts",
                "-reply",
                "-config",
                str(d / "tsa.cnf"),
                "-queryfile",
                str(qfile),
                "-inkey",
                str(d / "tsa.key"),
                "-signer",
                str(d / "tsa.pem"),
                "-chain",
                str(d / "chain.pem"),
                cwd=d,
            )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                tsa.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                query = self.rfile.read(length)
                mode = tsa.mode
                if mode == "http500":
                    self._send(500, b"internal error\n", "text/plain")
                    return
                if mode == "garbage":
                    self._send(200, b"\x30\x03\x02\x01" + os.urandom(40), "application/timestamp-reply")
                    return
                try:
                    answer = tsa.reply(query)
                except RuntimeError as exc:
                    self._send(400, str(exc).encode(), "text/plain")
                    return
                if mode == "replay":
                    if tsa._first_reply is None:
                        tsa._first_reply = answer
                    answer = tsa._first_reply
                self._send(200, answer, "application/timestamp-reply")

        return Handler

    def stop(self) -> None:
        """Stop the server and delete the throwaway keys."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> LocalTSA:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

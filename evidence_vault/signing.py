"""Ed25519 keys in OpenSSH formats and SSH signatures (the ``sshsig`` format of ``ssh-keygen -Y``).

A signature is the binary sshsig blob (PROTOCOL.sshsig), base64 in the custody log and armored
(``-----BEGIN SSH SIGNATURE-----``) in detached ``.sig`` files, so ``ssh-keygen -Y verify`` checks both.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import IntegrityError, KeyStoreError

# cryptography (about 18 ms to import) is loaded only to sign, to read private keys, and for the rare
# signature libsodium rejects: verify, ls, show and friends start without it.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

NAMESPACE = "evidence-vault"
FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")  # what PublicKey.fingerprint gives


def fingerprint_prefix(text: str) -> str:
    """What a user typed for a key fingerprint (or its start), spelled as :attr:`PublicKey.fingerprint`
    spells fingerprints: ``SHA256:`` added if missing, base64's ``=`` padding and blanks around dropped."""
    return "SHA256:" + text.strip().removeprefix("SHA256:").rstrip("=")


def normalize_fingerprint(text: str) -> str | None:
    """A whole key fingerprint as :attr:`PublicKey.fingerprint` spells it (see :func:`fingerprint_prefix`);
    None if ``text`` is no fingerprint."""
    fp = fingerprint_prefix(text)
    return fp if FINGERPRINT_RE.fullmatch(fp) else None


_MAGIC = b"SSHSIG"
_KEY_TYPE = b"ssh-ed25519"
_ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_ARMOR_END = "-----END SSH SIGNATURE-----"


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise ValueError("truncated")
    (n,) = struct.unpack_from(">I", buf, pos)
    end = pos + 4 + n
    if end > len(buf):
        raise ValueError("truncated")
    return buf[pos + 4 : end], end


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key (its 32 raw bytes) with its OpenSSH wire blob."""

    raw: bytes

    @functools.cached_property
    def key(self) -> Ed25519PublicKey:
        """The key as cryptography's object (imported on first use)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        return Ed25519PublicKey.from_public_bytes(self.raw)

    @functools.cached_property
    def blob(self) -> bytes:
        return _string(_KEY_TYPE) + _string(self.raw)

    @property
    def fingerprint(self) -> str:
        """``SHA256:<base64>`` exactly as ``ssh-keygen -l`` prints it."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def openssh(self, comment: str = "") -> str:
        line = "ssh-ed25519 " + base64.b64encode(self.blob).decode()
        return f"{line} {comment}".rstrip()

    @classmethod
    def from_openssh(cls, line: str) -> PublicKey:
        """Parse an ``ssh-ed25519 AAAA... [comment]`` line."""
        parts = line.strip().split()
        if len(parts) < 2 or parts[0] != "ssh-ed25519":
            raise KeyStoreError("not an OpenSSH ssh-ed25519 public key")
        try:
            blob = binascii.a2b_base64(parts[1].encode("ascii"), strict_mode=True)
        except (ValueError, UnicodeEncodeError):  # binascii.Error is a ValueError
            raise KeyStoreError("unreadable OpenSSH public key: bad base64") from None
        try:
            kind, _ = _read_string(blob, 0)
        except ValueError:
            raise KeyStoreError("unreadable OpenSSH public key: truncated key blob") from None
        if kind != _KEY_TYPE:
            raise KeyStoreError("unreadable OpenSSH public key: the key blob is not ssh-ed25519")
        return cls.from_blob(blob)

    @classmethod
    def from_blob(cls, blob: bytes) -> PublicKey:
        try:
            kind, pos = _read_string(blob, 0)
            raw, pos = _read_string(blob, pos)
        except ValueError:
            raise KeyStoreError("truncated public key blob") from None
        if kind != _KEY_TYPE or len(raw) != 32 or pos != len(blob):
            raise KeyStoreError("not an Ed25519 public key blob")
        _refuse_weak(raw)
        return cls(raw)


def _refuse_weak(raw: bytes) -> None:
    """Refuse a public key no key generator makes: a point of small order (a signature that verifies
    for every message exists, so anyone could sign as it; OpenSSL and OpenSSH accept such signatures),
    or a point outside the prime-order group or not canonically encoded (libsodium's check)."""
    valid = _valid_point()
    if valid is not None and not valid(raw):
        raise KeyStoreError(
            "not a usable Ed25519 public key: a point of small order or outside the prime-order group "
            "(anyone could sign as it)"
        )


@functools.cache
def _valid_point() -> Callable[[bytes], bool] | None:
    try:
        from nacl.bindings import crypto_core_ed25519_is_valid_point
    except ImportError:
        return None
    return crypto_core_ed25519_is_valid_point


@dataclass(frozen=True)
class Signer:
    """A private key able to sign; never printed, never serialized unencrypted by this class."""

    private_key: Ed25519PrivateKey

    def __repr__(self) -> str:
        return f"Signer({self.public.fingerprint})"

    @functools.cached_property
    def public(self) -> PublicKey:
        from cryptography.hazmat.primitives import serialization

        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return PublicKey(raw)

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint

    def sign(self, message: bytes, namespace: str = NAMESPACE) -> bytes:
        """Return the binary sshsig blob for ``message``."""
        signed = _signed_data(message, namespace)
        raw_sig = self.private_key.sign(signed)
        return (
            _MAGIC
            + struct.pack(">I", 1)
            + _string(self.public.blob)
            + _string(namespace.encode())
            + _string(b"")
            + _string(b"sha512")
            + _string(_string(_KEY_TYPE) + _string(raw_sig))
        )


def _signed_data(message: bytes, namespace: str) -> bytes:
    digest = hashlib.sha512(message).digest()
    return _MAGIC + _string(namespace.encode()) + _string(b"") + _string(b"sha512") + _string(digest)


@dataclass(frozen=True)
class ParsedSignature:
    public_blob: bytes
    namespace: str
    hash_algorithm: str
    raw: bytes

    @property
    def public_key(self) -> PublicKey:
        return PublicKey.from_blob(self.public_blob)


def parse_signature(blob: bytes) -> ParsedSignature:
    """Parse a binary sshsig blob; raises ``IntegrityError`` if it is malformed."""
    try:
        if not blob.startswith(_MAGIC):
            raise ValueError("missing SSHSIG preamble")
        pos = len(_MAGIC)
        if blob[pos : pos + 4] != struct.pack(">I", 1):
            raise ValueError("unsupported sshsig version")
        pos += 4
        pub, pos = _read_string(blob, pos)
        ns, pos = _read_string(blob, pos)
        _reserved, pos = _read_string(blob, pos)
        halg, pos = _read_string(blob, pos)
        sig, pos = _read_string(blob, pos)
        if pos != len(blob):
            raise ValueError("trailing bytes")
        kind, spos = _read_string(sig, 0)
        raw, spos = _read_string(sig, spos)
        if kind != _KEY_TYPE or len(raw) != 64 or spos != len(sig):
            raise ValueError("not an Ed25519 signature")
        return ParsedSignature(pub, ns.decode("utf-8"), halg.decode("ascii"), raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"malformed SSH signature: {exc}") from None


def prepare_verification(
    blob: bytes, message: bytes, public_key: PublicKey, namespace: str = NAMESPACE
) -> tuple[bytes, bytes]:
    """Every check of an sshsig blob except the Ed25519 equation itself.

    Returns ``(raw_signature, signed_data)`` for :func:`ed25519_ok`, so the expensive part can run
    elsewhere (another process); raises ``IntegrityError`` for everything that fails before it.
    """
    head, signed_head, _ = _expected_head(public_key.blob, namespace)
    if head and len(blob) == len(head) + 64 and blob.startswith(head):
        # Fast path: exactly what Signer.sign writes for this key and namespace (sha512), so the full
        # parse below would accept it and return these same bytes; anything else takes the full parse.
        return blob[-64:], signed_head + hashlib.sha512(message).digest()
    parsed = parse_signature(blob)
    if parsed.public_blob != public_key.blob:
        try:
            who = parsed.public_key.fingerprint
        except KeyStoreError:
            who = "an unreadable key"
        raise IntegrityError(f"signature is by {who}, expected {public_key.fingerprint}")
    if parsed.namespace != namespace:
        raise IntegrityError(f"signature namespace is {parsed.namespace!r}, expected {namespace!r}")
    if parsed.hash_algorithm not in ("sha512", "sha256"):
        raise IntegrityError(f"unsupported signature hash {parsed.hash_algorithm}")
    hasher = hashlib.sha512 if parsed.hash_algorithm == "sha512" else hashlib.sha256
    signed = (
        _MAGIC
        + _string(namespace.encode())
        + _string(b"")
        + _string(parsed.hash_algorithm.encode())
        + _string(hasher(message).digest())
    )
    return parsed.raw, signed


def prepare_verification_base64(
    sig: str, message: bytes, public_key: PublicKey, namespace: str = NAMESPACE
) -> tuple[bytes, bytes] | None:
    """:func:`prepare_verification` of the base64 text of a blob, for the one common case.

    Returns what ``prepare_verification(base64.b64decode(sig, validate=True), ...)`` would when ``sig``
    is the canonical base64 of exactly what :meth:`Signer.sign` writes for this key and namespace;
    otherwise ``None``: then the caller decodes and checks in full (which names what is wrong).
    """
    _, signed_head, text_head = _expected_head(public_key.blob, namespace)
    if not text_head or type(sig) is not str or len(sig) != len(text_head) + 88:
        return None
    if not sig.startswith(text_head):  # the head is whole 3-byte groups: its base64 stands alone
        return None
    try:
        tail = sig[len(text_head) :].encode("ascii")
        raw = binascii.a2b_base64(tail)
    except ValueError:  # binascii.Error, UnicodeEncodeError
        return None
    if len(raw) != 64 or binascii.b2a_base64(raw, newline=False) != tail:
        return None
    return raw, signed_head + hashlib.sha512(message).digest()


@functools.lru_cache(maxsize=64)
def _expected_head(public_blob: bytes, namespace: str) -> tuple[bytes, bytes, str]:
    """The bytes before the raw signature in a sha512 sshsig blob by this key in this namespace; the
    signed data before the message digest; the base64 of the first when it is whole 3-byte groups (so
    it begins the blob's base64), else "". All empty for a namespace UTF-8 cannot encode."""
    try:
        ns = _string(namespace.encode())
    except UnicodeEncodeError:
        return b"", b"", ""
    head = (
        _MAGIC
        + struct.pack(">I", 1)
        + _string(public_blob)
        + ns
        + _string(b"")
        + _string(b"sha512")
        + struct.pack(">I", 4 + len(_KEY_TYPE) + 4 + 64)
        + _string(_KEY_TYPE)
        + struct.pack(">I", 64)
    )
    signed_head = _MAGIC + ns + _string(b"") + _string(b"sha512") + struct.pack(">I", 64)
    return head, signed_head, base64.b64encode(head).decode("ascii") if len(head) % 3 == 0 else ""


def ed25519_ok(public_raw: bytes, signature: bytes, data: bytes) -> bool:
    """The Ed25519 equation alone (what :func:`prepare_verification` leaves to do): OpenSSL's verdict.

    libsodium checks first (about twice as fast). What it accepts, OpenSSL accepts too: both check the
    same cofactorless equation and reject a non-canonical S, and libsodium also rejects small-order
    or non-canonical points. So only a signature libsodium rejects needs OpenSSL to decide.
    """
    sodium = sodium_verify()
    if (
        sodium is not None
        and len(public_raw) == 32
        and len(signature) == 64
        and sodium(public_raw, signature, data)
    ):
        return True
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


@functools.cache
def sodium_verify() -> Callable[[bytes, bytes, bytes], bool] | None:
    """libsodium's Ed25519 verification (PyNaCl), loaded on first use; None where PyNaCl is missing.

    Call it before forking workers, so that they inherit the loaded library.
    """
    try:
        from nacl.bindings import crypto_sign_open
        from nacl.exceptions import BadSignatureError
    except ImportError:
        return None

    def verify(public_raw: bytes, signature: bytes, data: bytes) -> bool:
        try:
            crypto_sign_open(signature + data, public_raw)
        except BadSignatureError:
            return False
        return True

    return verify


def key_file_name(fingerprint: str) -> str:
    """``<fingerprint>.pub`` as vaults and bags name a public key file (``/`` spelled ``_``, ``+`` ``-``)."""
    return fingerprint.removeprefix("SHA256:").replace("/", "_").replace("+", "-") + ".pub"


def parse_allowed_signers(text: str) -> dict[str, PublicKey]:
    """``principal [options] keytype base64`` lines -> {principal: key}; raises on a bad line."""
    out: dict[str, PublicKey] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 3:
            raise KeyStoreError(f"bad allowed_signers line {line[:60]!r}")
        out[parts[0]] = PublicKey.from_openssh(" ".join(parts[-2:]))
    return out


def verify_signature(blob: bytes, message: bytes, public_key: PublicKey, namespace: str = NAMESPACE) -> None:
    """Check an sshsig blob over ``message`` by ``public_key``; raises ``IntegrityError`` if it fails."""
    raw, signed = prepare_verification(blob, message, public_key, namespace)
    if not ed25519_ok(public_key.raw, raw, signed):
        raise IntegrityError("signature does not verify")


def armor(blob: bytes) -> str:
    """The PEM-like armor ``ssh-keygen -Y sign`` writes."""
    b64 = base64.b64encode(blob).decode()
    lines = [b64[i : i + 70] for i in range(0, len(b64), 70)]
    return "\n".join([_ARMOR_BEGIN, *lines, _ARMOR_END]) + "\n"


def unarmor(text: str) -> bytes:
    """Inverse of :func:`armor`; raises ``IntegrityError`` if the armor is broken."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != _ARMOR_BEGIN or lines[-1] != _ARMOR_END:
        raise IntegrityError("not an armored SSH signature")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError:
        raise IntegrityError("bad base64 in SSH signature") from None


def generate() -> Signer:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Signer(Ed25519PrivateKey.generate())


def private_openssh(signer: Signer, passphrase: bytes | None) -> bytes:
    """Serialize a private key in OpenSSH format, encrypted when a passphrase is given."""
    from cryptography.hazmat.primitives import serialization

    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, enc
    )


def load_private_openssh(data: bytes, passphrase: bytes | None) -> Signer:
    """Load an OpenSSH private key; ``PassphraseError`` when the passphrase is missing or wrong."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .errors import PassphraseError

    try:
        key = serialization.load_ssh_private_key(data, passphrase or None)
    except TypeError:
        raise PassphraseError("the key is encrypted: a passphrase is needed") from None
    except ValueError as exc:
        if "password" in str(exc).lower() or "decrypt" in str(exc).lower() or passphrase:
            raise PassphraseError("wrong passphrase or damaged private key") from None
        raise KeyStoreError(f"unreadable OpenSSH private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyStoreError("only Ed25519 keys are supported")
    return Signer(key)


def is_encrypted_openssh(data: bytes) -> bool:
    """True if an OpenSSH private key file needs a passphrase."""
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_ssh_private_key(data, None)
    except TypeError:
        return True
    except ValueError:
        return False
    return False

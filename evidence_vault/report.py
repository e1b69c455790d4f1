"""The verification report: every finding, an outcome, and the exit code it maps to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["FAIL", "WARN", "INFO"]
Outcome = Literal["PASS", "WARN", "FAIL"]

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def line_subject(seq: int) -> str:
    """How a finding names a log line."""
    return f"log.jsonl line {seq + 1} (seq {seq})"


def printable(text: str) -> str:
    """``text``, with what UTF-8 cannot encode (lone surrogates) written as ``\\udXXX`` escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@dataclass(frozen=True)
class Finding:
    """One thing verification found; ``subject`` names the log line, item, object or file."""

    level: Level
    code: str
    subject: str
    message: str
    seq: int | None = None
    item: str | None = None

    def __post_init__(self) -> None:
        # A hand-made line can put a lone surrogate (valid JSON, not UTF-8) into a message: kept as its
        # escape, so that every output (JSON, text, HTML) can still be written.
        for name in ("subject", "message", "item"):
            text = getattr(self, name)
            if type(text) is str and not text.isascii():
                object.__setattr__(self, name, printable(text))

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "code": self.code,
            "subject": self.subject,
            "message": self.message,
            "seq": self.seq,
            "item": self.item,
        }


@dataclass
class Report:
    """Result of ``verify``: returned, never printed, by the library."""

    target: str
    kind: str = "vault"
    vault_id: str | None = None
    genesis_key: str | None = None
    #: (bundle) the vault name its signed ``vault.created`` line gives; not in ``to_dict`` (report v1)
    vault_name: str | None = None
    genesis_pinned: bool = False
    head: dict[str, Any] | None = None
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    started: str = ""
    finished: str = ""

    def add(
        self,
        level: Level,
        code: str,
        subject: str,
        message: str,
        *,
        seq: int | None = None,
        item: str | None = None,
    ) -> None:
        self.findings.append(Finding(level, code, subject, message, seq, item))

    def fail(self, code: str, subject: str, message: str, **kw: Any) -> None:
        self.add("FAIL", code, subject, message, **kw)

    def warn(self, code: str, subject: str, message: str, **kw: Any) -> None:
        self.add("WARN", code, subject, message, **kw)

    def failures_for(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.level == "FAIL" and f.code == code]

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "FAIL"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "WARN"]

    @property
    def outcome(self) -> Outcome:
        if self.failures:
            return "FAIL"
        return "WARN" if self.warnings else "PASS"

    def exit_code(self, strict: bool = False) -> int:
        if self.outcome == "FAIL" or (strict and self.outcome == "WARN"):
            return EXIT_FAIL
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_version": 1,
            "kind": self.kind,
            "target": self.target,
            "outcome": self.outcome,
            "vault_id": self.vault_id,
            "genesis_key": self.genesis_key,
            "genesis_pinned": self.genesis_pinned,
            "head": self.head,
            "started": self.started,
            "finished": self.finished,
            "stats": dict(self.stats),
            "counts": {
                "fail": len(self.failures),
                "warn": len(self.warnings),
                "info": sum(1 for f in self.findings if f.level == "INFO"),
            },
            "findings": [f.to_dict() for f in self.findings],
            "items": list(self.items),
        }

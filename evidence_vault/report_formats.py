"""Render a verification :class:`~evidence_vault.report.Report` for people and for CI systems.

Pure functions from a report to text: ``json`` (the schema-checked ``report.schema.json`` document),
``junit`` (JUnit XML: one test case per finding, FAIL findings as failures, one passing case when
there is nothing to report), ``markdown`` (a summary and a table, e.g. for a CI job summary) and
``text`` (plain text without colour or markup). Nothing here prints or writes files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Literal, get_args
from xml.etree import ElementTree as ET

from .errors import UsageError
from .report import Finding, Report

Format = Literal["json", "junit", "markdown", "text"]
FORMATS: tuple[str, ...] = get_args(Format)


def _clean(text: str) -> str:
    """Text safe in any of the outputs: control characters (hostile file names) shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def summary_line(report: Report) -> str:
    """One line: outcome, counts and what was verified."""
    stats = report.stats
    return (
        f"{report.outcome}: {stats.get('events', 0)} events, {stats.get('items', 0)} items, "
        f"{stats.get('bytes_hashed', 0)} bytes re-hashed; {len(report.failures)} failures, "
        f"{len(report.warnings)} warnings ({_clean(report.target)})"
    )


def _pinned(report: Report) -> str:
    return "pinned" if report.genesis_pinned else "NOT pinned"


def to_json(report: Report) -> str:
    """The ``report.schema.json`` document, indented, with a final newline."""
    return json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n"


def _case_name(f: Finding) -> str:
    return _clean(f"{f.code} {f.subject}")


def to_junit(report: Report) -> str:
    """JUnit XML: a ``testsuite`` per report, a ``testcase`` per finding (or one passing case)."""
    failures = len(report.failures)
    warnings = len(report.warnings)
    suites = ET.Element(
        "testsuites", name="evidence-vault verify", tests="0", failures=str(failures), errors="0"
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=_clean(f"evidence-vault verify {report.kind} {report.target}"),
        tests="0",
        failures=str(failures),
        errors="0",
        skipped="0",
        timestamp=report.started,
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("outcome", report.outcome),
        ("vault_id", report.vault_id or ""),
        ("genesis_key", report.genesis_key or ""),
        ("genesis_pinned", str(report.genesis_pinned).lower()),
        *((f"stats.{k}", str(v)) for k, v in sorted(report.stats.items())),
    ):
        ET.SubElement(props, "property", name=name, value=_clean(value))
    classname = f"evidence-vault.{report.kind}"
    cases = 0
    for f in report.findings:
        case = ET.SubElement(suite, "testcase", name=_case_name(f), classname=f"{classname}.{f.code}")
        cases += 1
        detail = _clean(f"{f.level} {f.code} at {f.subject}: {f.message}")
        if f.level == "FAIL":
            fail = ET.SubElement(case, "failure", message=_clean(f.message), type=f.code)
            fail.text = detail
        else:
            out = ET.SubElement(case, "system-out")
            out.text = detail
    if not report.findings:
        case = ET.SubElement(suite, "testcase", name="verify", classname=classname)
        cases += 1
        out = ET.SubElement(case, "system-out")
        out.text = summary_line(report)
    suite.set("tests", str(cases))
    suites.set("tests", str(cases))
    if warnings:
        suite.set("warnings", str(warnings))
    ET.indent(suites)
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def md_cell(text: str) -> str:
    """Text shown as itself in a markdown table cell: no HTML (a hostile ``<!--`` would hide every row
    after it), no code span, no emphasis or link, no cell boundary."""
    text = _clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`|*_\[\]])", r"\\\1", text)


def to_markdown(report: Report) -> str:
    """A heading with the outcome, the key facts, and a table of findings."""
    stats = report.stats
    lines = [
        f"## evidence-vault verify: {report.outcome}",
        "",
        f"- target: {md_cell(report.target)}",
        f"- vault id: `{report.vault_id or '-'}`",
        f"- genesis key: `{report.genesis_key or '-'}` ({_pinned(report)})",
        f"- {stats.get('events', 0)} events, {stats.get('items', 0)} items, "
        f"{stats.get('bytes_hashed', 0)} bytes re-hashed",
        f"- {len(report.failures)} failures, {len(report.warnings)} warnings",
        "",
        "| level | code | where | finding |",
        "|---|---|---|---|",
    ]
    for f in report.findings:
        lines.append(f"| {f.level} | {md_cell(f.code)} | {md_cell(f.subject)} | {md_cell(f.message)} |")
    if not report.findings:
        lines.append("| PASS | - | - | nothing to report |")
    return "\n".join(lines) + "\n"


def to_text(report: Report) -> str:
    """Plain text: one line per finding, then the summary (no colour, no markup)."""
    lines = [
        f"{f.level:4}  {_clean(f.code)}  {_clean(f.subject)}: {_clean(f.message)}" for f in report.findings
    ]
    lines.append(summary_line(report))
    if report.genesis_key:
        lines.append(f"genesis key {report.genesis_key} ({_pinned(report)})")
    proven = [i for i in report.items if i.get("proven_since")]
    if report.items:
        lines.append(f"{len(proven)} of {len(report.items)} items proven to exist at a point in time")
    return "\n".join(lines) + "\n"


_RENDERERS: dict[str, Callable[[Report], str]] = {
    "json": to_json,
    "junit": to_junit,
    "markdown": to_markdown,
    "text": to_text,
}


def render(report: Report, fmt: str) -> str:
    """``report`` in format ``fmt`` (one of :data:`FORMATS`)."""
    try:
        renderer = _RENDERERS[fmt]
    except KeyError:
        raise UsageError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}") from None
    return renderer(report)

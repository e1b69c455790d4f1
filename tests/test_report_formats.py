"""verify --format json|junit|markdown|text and --output: renderers in evidence_vault.report_formats."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from evidence_vault import schemas
from evidence_vault.report import Report
from evidence_vault.report_formats import FORMATS, render, to_junit, to_markdown, to_text
from tests.conftest import Cli, object_path

ITEM = "sha256:" + "ab" * 32


def _report() -> Report:
    r = Report(target="/v\nault", vault_id="00000000-0000-4000-8000-000000000000", started="s", finished="f")
    r.stats = {"events": 5, "items": 4, "keys": 1, "bytes_hashed": 100}
    r.fail(
        "log.chain-broken", "log.jsonl line 3 (seq 2)", "prev does not match | pipe <tag> & \x1b[31m", seq=2
    )
    r.fail("object.hash-mismatch", f"original of item {ITEM}", "content does not match", item=ITEM)
    r.warn("object.orphan", "object abc…", "not referenced")
    return r


def _tamper(vault: Path) -> str:
    item = json.loads((vault / "log.jsonl").read_bytes().splitlines()[1])["data"]["item"]
    obj = object_path(vault, item)
    obj.chmod(stat.S_IWUSR | stat.S_IRUSR)
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))
    return str(item)


def test_junit_one_testcase_per_finding_failures_for_fail() -> None:
    root = ET.fromstring(to_junit(_report()))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 3
    assert suite.get("tests") == "3" and suite.get("failures") == "2"
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.find("failure").get("type") for c in failed] == ["log.chain-broken", "object.hash-mismatch"]  # type: ignore[union-attr]
    assert "\x1b" not in to_junit(_report())  # control characters escaped, XML stays well-formed
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["outcome"] == "FAIL" and props["stats.items"] == "4"


def test_junit_clean_report_has_one_passing_testcase() -> None:
    r = Report(target="/v", stats={"events": 1, "items": 0})
    root = ET.fromstring(to_junit(r))
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 1 and cases[0].find("failure") is None
    assert root.find("testsuite").get("failures") == "0"  # type: ignore[union-attr]


def test_markdown_has_a_table_and_escapes_pipes() -> None:
    md = to_markdown(_report())
    lines = md.splitlines()
    assert lines[0] == "## evidence-vault verify: FAIL"
    header = lines.index("| level | code | where | finding |")
    assert lines[header + 1] == "|---|---|---|---|"
    rows = lines[header + 2 :]
    assert len(rows) == 3
    assert all(row.count(" | ") == 3 for row in rows)  # the | in a message is escaped
    assert "\\|" in rows[0] and "\x1b" not in md


def test_text_is_plain() -> None:
    text = to_text(_report())
    assert "\x1b" not in text and "[red]" not in text and "┃" not in text
    assert text.splitlines()[0].startswith("FAIL  log.chain-broken  log.jsonl line 3 (seq 2): ")
    assert "FAIL: 5 events, 4 items" in text
    assert all("\n" not in line for line in text.splitlines())


def test_unknown_format_is_a_usage_error() -> None:
    from evidence_vault.errors import UsageError

    with pytest.raises(UsageError):
        render(_report(), "yaml")
    assert set(FORMATS) == {"json", "junit", "markdown", "text"}


def test_cli_json_validates_and_alias(cli: Cli, filled_vault: Path) -> None:
    a = cli("--vault", filled_vault, "verify", "--json")
    b = cli("--vault", filled_vault, "verify", "--format", "json")
    assert a.code == b.code == 0
    assert schemas.validate("report", a.json()) is True
    assert schemas.validate("report", b.json()) is True
    assert a.json()["outcome"] == b.json()["outcome"] == "PASS"


def test_cli_formats_on_clean_and_tampered_vault(cli: Cli, filled_vault: Path, tmp_path: Path) -> None:
    res = cli("--vault", filled_vault, "verify", "--format", "junit")
    assert res.code == 0
    cases = ET.fromstring(res.stdout).findall("./testsuite/testcase")
    assert len(cases) == 1 and cases[0].find("failure") is None

    item = _tamper(filled_vault)
    out = tmp_path / "report.xml"
    res = cli("--vault", filled_vault, "verify", "--format", "junit", "--output", out)
    assert res.code == 1  # exit codes unchanged
    assert res.stdout == ""
    assert "FAIL" in res.stderr and str(out) in res.stderr  # the summary still on stderr
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None
    failures = [c.find("failure") for c in suite.findall("testcase") if c.find("failure") is not None]
    assert len(failures) == int(suite.get("failures", "-1")) >= 1
    assert any(f is not None and item in (f.text or "") for f in failures)

    md = cli("--vault", filled_vault, "verify", "--format", "markdown")
    assert md.code == 1 and "| FAIL | object.hash-mismatch |" in md.stdout

    text_file = tmp_path / "report.txt"
    txt = cli("--vault", filled_vault, "verify", "--format", "text", "--output", text_file)
    assert txt.code == 1 and "object.hash-mismatch" in text_file.read_text()
    assert "\x1b" not in text_file.read_text()

    js_file = tmp_path / "report.json"
    js = cli("--vault", filled_vault, "verify", "--json", "--output", js_file)
    assert js.code == 1 and js.stdout == ""
    doc = json.loads(js_file.read_text())
    assert schemas.validate("report", doc) and doc["outcome"] == "FAIL"


def test_cli_bad_format_and_unwritable_output(cli: Cli, filled_vault: Path, tmp_path: Path) -> None:
    res = cli("--vault", filled_vault, "verify", "--format", "yaml")
    assert res.code == 2 and len(res.stderr.strip().splitlines()) == 1 and "yaml" in res.stderr
    res = cli(
        "--vault", filled_vault, "verify", "--format", "junit", "--output", tmp_path / "no" / "such" / "r.xml"
    )
    assert res.code == 2 and "cannot write the report" in res.stderr


def test_cli_output_inside_the_vault_is_refused(cli: Cli, filled_vault: Path) -> None:
    log = filled_vault / "log.jsonl"
    before = log.read_bytes()
    for target in (log, filled_vault / "report.xml"):
        res = cli("--vault", filled_vault, "verify", "--format", "junit", "--output", target)
        assert res.code == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "inside the vault" in res.stderr
    assert log.read_bytes() == before and not (filled_vault / "report.xml").exists()


def test_markdown_cells_carry_no_html_code_spans_or_links() -> None:
    # A hostile value (an event type, a bag's file name) must not hide the rows after it (<!--), open a
    # code span, or make a link in a CI job summary.
    r = Report(target="/srv/v`<!--x", started="s", finished="f")
    r.fail("log.unknown-type", "log.jsonl line 6 (seq 5)", "unknown event type '<!--'", seq=5)
    r.fail("log.bad-signature", "log.jsonl line 7 (seq 6)", "[click](http://x) *now* <b>&amp;</b> `x`")
    md = to_markdown(r)
    assert "<" not in md and ">" not in md.replace("&gt;", "")
    assert "&lt;!--" in md and "&amp;amp;" in md
    rows = [line for line in md.splitlines() if line.startswith("| FAIL |")]
    assert len(rows) == 2 and "\\[click\\](http://x) \\*now\\*" in rows[1] and "\\`x\\`" in rows[1]
    assert "- target: /srv/v\\`&lt;!--x" in md
    from markdown_it import MarkdownIt  # installed with rich

    html = MarkdownIt("commonmark").enable("table").render(md)
    assert html.count("<tr>") == 3 and "<!--" not in html and "<a " not in html and "<b>" not in html
    assert "<em>" not in html and "<code>x</code>" not in html


def _ci_md_streams() -> dict[str, tuple[str, str]]:
    """docs/ci.md's table of where each --format goes: format -> (without --output, with --output)."""
    from tests.paths import REPO

    text = (REPO / "docs" / "ci.md").read_text("utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0].strip("`").split("`")[0] in FORMATS:
            rows[cells[0].strip("`").split("`")[0]] = (cells[1], cells[2])
    return rows


def test_ci_md_says_where_each_format_goes(run: Cli, filled_vault: Path, tmp_path: Path) -> None:
    """docs/ci.md said the report goes to stdout without --output; `text` (the default) goes to stderr
    even off a terminal. Its table is checked against a real process (stderr not a terminal) for every
    format, on a vault with a FAIL."""
    rows = _ci_md_streams()
    assert set(rows) == set(FORMATS), rows
    _tamper(filled_vault)
    for fmt, (plain, with_output) in rows.items():
        res = run("--vault", filled_vault, "verify", "--format", fmt)
        assert res.code == 1, res.stderr
        if plain.startswith("stdout"):
            assert "nothing on stderr" in plain and res.stdout and res.stderr == "", fmt
        else:
            assert plain.startswith("stderr") and "stdout stays empty" in plain, fmt
            assert res.stdout == "" and "object.hash-mismatch" in res.stderr, fmt
            assert any(line.startswith("FAIL  ") for line in res.stderr.splitlines())
        out = tmp_path / f"report.{fmt}"
        res = run("--vault", filled_vault, "verify", "--format", fmt, "--output", out)
        assert with_output == "FILE, and the human report on stderr", fmt
        assert res.code == 1 and res.stdout == "" and out.read_text()
        assert "object.hash-mismatch" in res.stderr and f"{fmt} report written to {out}" in res.stderr
    res = run("--vault", filled_vault, "verify", "--format", "sarif")
    assert res.code == 2 and "sarif" in res.stderr

"""The HTML custody report: escaping of hostile names, thumbnails, and rendering in a real headless browser.

Needs Debian's ``chromium`` and ``pdftotext`` (poppler-utils); both are in the Makefile's APT_PACKAGES.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.paths import CORPUS

HOSTILE = '<script>alert("x")<!-- & "quotes" <img src=x onerror=alert(1)>.jpg'


@pytest.fixture
def report_vault(cli: Cli, vault: Path, tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / HOSTILE).write_bytes((CORPUS / "images" / "Apple iPhone 4.jpg").read_bytes())
    res = cli(
        "--vault", vault, "add", src / HOSTILE, CORPUS / "video" / "with-gps.mov", "--note", "<b>bold</b>"
    )
    assert res.code == 0, res.stderr
    assert cli("--vault", vault, "checkpoint").code == 0
    return vault


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is needed (apt-get install -y chromium)"
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=180)


def test_report_escapes_hostile_names_and_embeds_thumbnails(
    cli: Cli, report_vault: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    res = cli("--vault", report_vault, "report", "--out", out)
    assert res.code == 0, res.stderr
    html = out.read_text()
    assert "<script" not in html and "<img src=x" not in html and "<!--" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;!-- &amp; &quot;quotes&quot;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert len(re.findall(r'src="data:image/jpeg;base64,', html)) == 1  # the photo; the video gets an icon
    assert 'aria-label="video"' in html
    assert (
        "@media print" in html
        and "<link" not in html
        and "http://" not in html.replace("http://www.w3.org", "")
    )
    stdout = cli("--vault", report_vault, "report")
    assert stdout.code == 0 and stdout.stdout.startswith("<!DOCTYPE html>")


def test_report_renders_in_headless_chromium(cli: Cli, report_vault: Path, tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    assert cli("--vault", report_vault, "export", "--all", "--out", bag, "--redact-metadata", "gps").code == 0
    page = (bag / "report.html").resolve()
    png, pdf = tmp_path / "out.png", tmp_path / "out.pdf"
    shot = chromium("--screenshot=" + str(png), "--window-size=1200,2000", page.as_uri(), tmp=tmp_path)
    assert png.exists() and png.stat().st_size > 20_000, shot.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = chromium("--print-to-pdf=" + str(pdf), "--no-pdf-header-footer", page.as_uri(), tmp=tmp_path)
    assert pdf.exists() and pdf.stat().st_size > 20_000, printed.stderr
    assert pdf.read_bytes()[:5] == b"%PDF-"
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = " ".join(text.split())
    for needed in (
        "Chain of custody report",
        "What was verified",
        "What this does NOT prove",
        "who pressed the shutter",
        '<script>alert("x")<!-- & "quotes"',
        "with-gps.mov",
        "withheld",
        "item.ingested",
        "Alice Custodian",
        "Custody timeline",
        "Proof of time",
    ):
        assert needed in flat, needed
    assert "32.0929" not in flat  # the redacted GPS of the video

"""The custody report: one self-contained HTML file (inline CSS, print-friendly), built from checked evidence.

Everything shown comes from an ``evidence/`` folder that :func:`bundle_verify.check_evidence` has just
checked (an export's staging folder, a received bag, or a temporary one for ``evidence-vault report``),
so the report states only what verification established. All text is HTML-escaped: file names and
metadata are hostile input. The report an export ships (:func:`bag_report`) depends on the bag alone,
so that verify-bundle can render it again and compare.
"""

from __future__ import annotations

import base64
import html
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import events as ev
from .bundle_verify import EvidenceState, check_evidence, mentioned_items
from .keystore import utc_now
from .report import Finding, Report
from .vault import Vault

THUMB_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}
THUMB_MAX = 5 * 1024 * 1024

_CSS = """
body {font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #111;
  margin: 2em auto; max-width: 60em; padding: 0 1em}
h1 {font-size: 1.6em; margin-bottom: .2em}
h2 {font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em}
.summary {background: #f4f6f8; border: 1px solid #d0d7de; border-radius: 6px; padding: .8em 1.2em}
.outcome-PASS {color: #116329} .outcome-WARN {color: #9a6700} .outcome-FAIL {color: #cf222e}
.item {border: 1px solid #d0d7de; border-radius: 6px; padding: 1em; margin: 1em 0; page-break-inside: avoid}
.thumb {float: right; margin: 0 0 1em 1em; width: 180px; height: 180px; display: flex;
  align-items: center; justify-content: center; background: #fafafa; border: 1px solid #eee}
.thumb img {max-width: 180px; max-height: 180px; object-fit: contain}
table {border-collapse: collapse; margin: .5em 0; font-size: .92em}
td, th {border: 1px solid #d0d7de; padding: .25em .5em; text-align: left; vertical-align: top}
code, .hash {font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; word-break: break-all}
.withheld {color: #666; font-style: italic} .clear {clear: both}
@media print {
  body {margin: 0; max-width: none; font-size: 11pt}
  .item {border-color: #999} a {color: inherit; text-decoration: none}
  .summary {background: none} h2 {page-break-after: avoid}
}
"""

_ICON_IMAGE = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 24 24" role="img" '
    'aria-label="image">'
    '<rect x="3" y="4" width="18" height="16" rx="2" fill="none" stroke="#57606a" stroke-width="1.5"/>'
    '<circle cx="9" cy="10" r="2" fill="#57606a"/>'
    '<path d="M4 18l5-5 4 4 3-3 4 4" fill="none" stroke="#57606a" '
    'stroke-width="1.5"/></svg>'
)
_ICON_VIDEO = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 24 24" role="img" '
    'aria-label="video">'
    '<rect x="2" y="5" width="15" height="14" rx="2" fill="none" stroke="#57606a" stroke-width="1.5"/>'
    '<path d="M17 10l5-3v10l-5-3z" fill="none" stroke="#57606a" stroke-width="1.5"/></svg>'
)


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _thumb(media_type: str, path: Path | None) -> str:
    if path is not None and media_type in THUMB_TYPES:
        try:
            if path.stat().st_size < THUMB_MAX:
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                return f'<img alt="thumbnail" src="data:{e(media_type)};base64,{data}">'
        except OSError:
            pass
    return _ICON_VIDEO if media_type.startswith("video/") else _ICON_IMAGE


def _checkpoint_of(subject: str) -> int | None:
    """The tree size of the checkpoint directory a finding's subject is in (``…/checkpoints/<size>/…``)."""
    parts = subject.split("/")
    for at, part in enumerate(parts[:-1]):
        if part == "checkpoints" and parts[at + 1].isascii() and parts[at + 1].isdigit():
            return int(parts[at + 1])
    return None


def _proof_text(state: EvidenceState, report: Report, item: str) -> str:
    entry = next((i for i in report.items if i.get("id") == item), None)
    if entry is None:
        return "not checked"
    rec = state.log.items.get(item)
    covering = [s for s in state.checkpoint_sizes if rec is not None and s > rec.seq]
    parts: list[str] = []
    if entry.get("proven_since"):
        parts.append(
            f"<b>proven to exist since {e(entry['proven_since'])}</b> ({e(entry['proof'])}, "
            f"checkpoint of {e(entry['checkpoint'])} log lines)"
        )
    for size in covering:
        for a in state.anchors.get(size, []):
            what = "Bitcoin" if a.kind == "bitcoin" else "RFC 3161 TSA genTime"
            parts.append(f"checkpoint {size}: {e(what)} {e(a.detail)} at {e(a.time)}")
        if state.pending.get(size):
            parts.append(
                f"checkpoint {size}: OpenTimestamps proof still pending (not yet in a Bitcoin block)"
            )
        unpinned = sum(
            1
            for f in report.warnings
            if f.code == "anchors.tsa-unpinned" and _checkpoint_of(f.subject) == size
        )
        if unpinned:
            parts.append(
                f"checkpoint {size}: {unpinned} RFC 3161 token(s) that check only against the TSA "
                "root shipped with them, which proves no time: check them against your own copy of the "
                "TSA's root (evidence-vault verify-bundle --tsa-ca)"
            )
    if not covering:
        parts.append("no checkpoint covers this item yet: no time proof")
    elif not entry.get("proven_since"):
        parts.append("no completed time proof yet")
    return "<br>".join(parts)


def render(
    state: EvidenceState,
    report: Report,
    *,
    thumbs: Mapping[str, Path],
    names: Mapping[str, str],
    title: str = "Chain of custody report",
    made: str | None = None,
) -> str:
    """The HTML page for the items of ``state`` (already checked; findings in ``report``), made at
    ``made`` (default: now)."""
    auth = state.log.authority
    vault_name = state.export.get("vault_name") or ""
    fails, warns = report.failures, report.warnings
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>Vault <b>{e(vault_name)}</b> (id <code>{e(state.vault_id or '?')}</code>); "
        f"report made {e(made or utc_now())}.</p>",
        '<div class="summary">',
        f'<p>Verification outcome: <b class="outcome-{e(report.outcome)}">{e(report.outcome)}</b> '
        f"({len(fails)} failures, {len(warns)} warnings).</p>",
        "<p><b>What was verified.</b> Each file below is byte-identical to the file recorded in the custody "
        "log (its SHA-256 is its id). Every log entry shown is signed by the key named beside it, that key "
        "was authorized at that point of the log, and the entries form an unbroken hash chain "
        f"({len(state.revealed)} entries shown, {state.withheld} entries about other files withheld and "
        "represented only by their hashes). Signed checkpoints of the log were checked against the log, and "
        "their time proofs (OpenTimestamps in Bitcoin, RFC 3161 time-stamping authorities) give the earliest "
        "time each file is proven to have existed.</p>",
        "<p><b>What this does NOT prove.</b> It does not show that a scene was not staged or edited before "
        "the file was taken into custody, who pressed the shutter, or that the device's clock and metadata "
        "were correct. A signature shows which key signed, not who held it: confirm the keys below with "
        "their owners out of band.</p>",
    ]
    if fails:
        out.append("<p><b>Failures:</b></p><ul>")
        out += [f"<li><code>{e(f.code)}</code> {e(f.subject)}: {e(f.message)}</li>" for f in fails[:50]]
        out.append("</ul>")
    out.append("</div>")
    out.append("<h2>Keys that signed</h2><table><tr><th>name</th><th>fingerprint</th><th>role</th></tr>")
    for fp in sorted(state.signers):
        g = auth.keys.get(fp)
        out.append(
            f"<tr><td>{e(g.name if g else '?')}</td><td class=hash>{e(fp)}</td>"
            f"<td>{e(g.role if g else '?')}</td></tr>"
        )
    out.append("</table>")
    out.append(f"<h2>Items ({len(state.log.items)})</h2>")
    # One pass over the revealed events (kept on disk, parsed as read): each item's ingest event and
    # timeline rows.
    ingest_events: dict[str, ev.Event] = {}
    rows: dict[str, list[str]] = {}
    for seq, event in state.revealed.items():
        if event.type == ev.ITEM_INGESTED and isinstance(event.data.get("item"), str):  # hand-made: any JSON
            ingest_events[event.data["item"]] = event
        mentioned = [i for i in mentioned_items(event) if i in state.log.items]
        if not mentioned:
            continue
        g = auth.keys.get(event.actor)
        who = f"{e(g.name) if g else '?'} <span class=hash>{e(event.actor)}</span>"
        row = f"<tr><td>{seq}</td><td>{e(event.time)}</td><td>{e(event.type)}</td><td>{who}</td></tr>"
        for item in dict.fromkeys(mentioned):
            rows.setdefault(item, []).append(row)
    for item, rec in state.log.items.items():
        ingest = ingest_events.get(item)
        data = ingest.data if ingest is not None else {}
        media_type = str(data.get("media_type") or "application/octet-stream")
        opened = state.openings.get(item, {})
        name = opened.get("original_name") or names.get(item) or item
        out.append('<div class="item">')
        out.append(f'<div class="thumb">{_thumb(media_type, thumbs.get(item))}</div>')
        out.append(f"<h3>{e(name)}</h3><table>")
        out.append(f"<tr><th>file in this package</th><td>{e(names.get(item, ''))}</td></tr>")
        out.append(f"<tr><th>SHA-256 (item id)</th><td class=hash>{e(item)}</td></tr>")
        out.append(
            f"<tr><th>size</th><td>{e(rec.size)} bytes</td></tr>"
            f"<tr><th>type</th><td>{e(media_type)}</td></tr>"
        )
        out.append(f"<tr><th>metadata record</th><td class=hash>{e(rec.metadata or '')}</td></tr></table>")
        out.append("<h4>Capture metadata</h4><table>")
        public = data.get("public") if isinstance(data.get("public"), dict) else {}
        assert isinstance(public, dict)
        for k, v in sorted(public.items()):
            out.append(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>")
        for k in sorted(rec.committed):
            if k in opened:
                out.append(f"<tr><th>{e(k)}</th><td>{e(opened[k])}</td></tr>")
            else:
                out.append(f'<tr><th>{e(k)}</th><td class="withheld">withheld</td></tr>')
        out.append('</table><div class="clear"></div>')
        out.append(
            "<h4>Custody timeline</h4><table>"
            "<tr><th>seq</th><th>time (UTC)</th><th>event</th><th>by</th></tr>"
        )
        out += rows.get(item, [])
        out.append("</table>")
        out.append(f"<h4>Proof of time</h4><p>{_proof_text(state, report, item)}</p></div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_for_bag(
    bag_root: Path,
    thumbs: Mapping[str, Path],
    *,
    names: Mapping[str, str],
    tsa_roots: Sequence[bytes] = (),
    made: str | None = None,
    hermetic: bool = False,
) -> str:
    """Check ``bag_root/evidence`` and render its report (the payload itself is not re-hashed here)."""
    report = Report(target=str(bag_root), kind="bundle", started=utc_now())
    state = check_evidence(bag_root, report, tsa_roots=tsa_roots, hermetic=hermetic)
    return render_checked(state, report.findings, thumbs=thumbs, names=names, made=made)


def render_checked(
    state: EvidenceState,
    findings: Sequence[Finding],
    *,
    thumbs: Mapping[str, Path],
    names: Mapping[str, str],
    made: str | None = None,
) -> str:
    """The report of an ``evidence/`` that :func:`check_evidence` checked into ``state``, with the
    ``findings`` it made."""
    from .anchors_verify import _item_times

    report = Report(target="", kind="bundle")
    report.findings = list(findings)
    _item_times(state.log, report, state.anchored)
    return render(state, report, thumbs=thumbs, names=names, made=made)


def encode_report(html_text: str) -> bytes:
    """The bytes of ``report.html`` (a lone surrogate from a hand-made name written as its escape)."""
    return html_text.encode("utf-8", "backslashreplace")


def bag_report(bag_root: Path, thumbs: Mapping[str, Path], *, names: Mapping[str, str], made: str) -> bytes:
    """The ``report.html`` an export ships: from the bag's ``evidence/`` checked hermetically (no TSA
    root of this machine counts: it states what the bag proves by itself), made at the export's
    ``created`` time, with the thumbnails of the files in ``data/``. Deterministic, so that
    verify-bundle can render it again from the bag and compare, byte for byte."""
    return encode_report(render_for_bag(bag_root, thumbs, names=names, made=made, hermetic=True))


def vault_report(vault: Vault, item_ids: Sequence[str]) -> str:
    """The custody report of some (or all) items of a vault, without exporting them."""
    from .export import stage_evidence

    tmp = Path(tempfile.mkdtemp(prefix="evidence-vault-report-"))
    try:
        staged = stage_evidence(vault, item_ids, tmp, export_id="", created=utc_now())
        thumbs = {i: vault.objects.path(i.removeprefix("sha256:")) for i in item_ids}
        return render_for_bag(tmp, thumbs, names={i: n for i, n in staged.names.items()})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

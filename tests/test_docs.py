"""The documentation stays true: links resolve, every finding code and CLI option is documented, and
the by-hand `ssh-keygen -Y verify` recipe of docs/formats.md works on a real vault."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.paths import REPO

DOCS = REPO / "docs"
MARKDOWN = sorted(
    [REPO / "README.md", REPO / "CHANGELOG.md", REPO / "examples" / "media" / "README.md", *DOCS.glob("*.md")]
)
SCHEMAS = [
    "event.schema.json",
    "vault.schema.json",
    "report.schema.json",
    "item.schema.json",
    "add-result.schema.json",
    "identity.schema.json",
    "metadata-object.schema.json",
]

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _links(md: Path) -> list[str]:
    text = _FENCE.sub("", md.read_text("utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return _LINK.findall(text)


@pytest.mark.parametrize("md", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(md: Path) -> None:
    assert md.is_file(), f"{md} is missing"
    broken = []
    for target in _links(md):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # external (https:, mailto:) or an anchor in the same page
        path = (md.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{md.relative_to(REPO)}: links to missing files: {broken}"


def test_formats_links_every_schema() -> None:
    linked = set(_links(DOCS / "formats.md"))
    for name in SCHEMAS:
        assert f"../schemas/{name}" in linked, f"docs/formats.md does not link ../schemas/{name}"


_SHELL_BLOCK = re.compile(r"^```(?:sh|bash|shell|console)\b[^\n]*\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize(
    "md", [*MARKDOWN, REPO / "bench" / "README.md"], ids=lambda p: str(p.relative_to(REPO))
)
def test_shell_blocks_hold_no_comments(md: Path) -> None:
    """zsh, macOS's default shell, runs a pasted `# ...` (or `cmd  # ...`) as words, not a comment
    (INTERACTIVE_COMMENTS is off by default): the shell blocks readers paste hold commands only."""
    commented = [
        line
        for block in _SHELL_BLOCK.findall(md.read_text("utf-8"))
        for line in block.splitlines()
        if re.search(r"(^|\s)#(\s|$)", line)
    ]
    assert not commented, f"{md.name}: explain in the text, not in a # comment: {commented}"


def test_readme_starts_with_make_demo_and_make_test() -> None:
    lines = [ln for ln in (REPO / "README.md").read_text("utf-8").splitlines() if ln.strip()]
    assert lines[0].startswith("# ")
    first_block = lines[lines.index("```sh") + 1 : lines.index("```")]
    assert [ln.split("#")[0].strip() for ln in first_block] == ["make demo", "make test"]
    assert lines.index("```sh") == 2, (
        "the two commands come right after the title and the one-line description"
    )


# -- finding codes -------------------------------------------------------------------------------------------
_CALL = re.compile(r"""\breport\.(?:fail|warn)\(\s*(f?)(["'])(.+?)\2""", re.S)
_ADD = re.compile(r"""\breport\.add\(\s*["'](?:FAIL|WARN|INFO)["']\s*,\s*(f?)(["'])(.+?)\2""", re.S)


def _expand(is_f: str, code: str) -> list[str]:
    """A literal code, or the codes an f-string can produce from the literals in its {...} parts."""
    if not is_f or "{" not in code:
        return [code]
    m = re.search(r"\{([^}]*)\}", code)
    assert m is not None
    options = re.findall(r"""['"]([^'"]+)['"]""", m.group(1))
    if not options and code.startswith("bag.{"):
        options = bagit_codes()  # verify-bundle re-emits the BagIt validator's findings as bag.<code>
    assert options, f"cannot tell which codes the f-string {code!r} produces: use literal codes"
    return [c for opt in options for c in _expand(is_f, code[: m.start()] + opt + code[m.end() :])]


def bagit_codes() -> list[str]:
    """The finding codes of the BagIt validator (evidence_vault/bagit.py): its quoted `area.name` literals."""
    text = (REPO / "evidence_vault" / "bagit.py").read_text("utf-8")
    areas = "bagit|bag|bag-info|tag|tagmanifest|manifest|payload|path|file|fetch"
    found = re.findall(rf"""["']((?:{areas})\.[a-z0-9-]+)["']""", text)
    return sorted({c for c in found if not c.endswith(".txt")})


def emitted_codes() -> dict[str, str]:
    codes: dict[str, str] = {}
    for py in sorted((REPO / "evidence_vault").rglob("*.py")):
        text = py.read_text("utf-8")
        for rx in (_CALL, _ADD):
            for is_f, _q, code in rx.findall(text):
                for c in _expand(is_f, code):
                    codes.setdefault(c, str(py.relative_to(REPO)))
    return codes


def test_codes_are_found() -> None:
    codes = emitted_codes()
    for known in ("object.hash-mismatch", "object.missing", "object.unreadable", "log.chain-broken"):
        assert known in codes


def test_every_finding_code_is_documented() -> None:
    doc = (DOCS / "exit-codes.md").read_text("utf-8")
    missing = {c: where for c, where in emitted_codes().items() if f"`{c}`" not in doc}
    assert not missing, f"finding codes not in docs/exit-codes.md (add a row for each): {missing}"


# -- CLI reference -------------------------------------------------------------------------------------------
def _commands() -> Iterator[tuple[list[str], Any]]:
    from tests.cli_reference import commands

    return commands()


def test_cli_md_is_generated_from_the_help() -> None:
    """docs/cli.md below its hand-written head is what ``make docs`` writes from the CLI's own help."""
    from tests.cli_reference import CLI_MD, page

    assert CLI_MD.read_text("utf-8") == page(), "docs/cli.md is stale: run `make docs`"


def test_every_command_and_option_is_in_cli_md() -> None:
    doc = (DOCS / "cli.md").read_text("utf-8")
    sections = re.split(r"^#{2,3} ", doc, flags=re.M)
    missing = []
    for path, cmd in _commands():
        title = " ".join(["evidence-vault", *path])
        if path:
            body = next((s for s in sections if s.startswith(f"`{title}`\n")), None)
            if body is None:
                missing.append(title)
                continue
        else:
            body = next((s for s in sections if s.startswith("Global options")), "")
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-") and "completion" not in opt and f"`{opt}`" not in body:
                    missing.append(f"{title} {opt}")
    assert not missing, f"not documented in docs/cli.md: {missing}"


# -- the ssh-keygen recipe -----------------------------------------------------------------------------------
def _recipe() -> str:
    text = (DOCS / "formats.md").read_text("utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
    found = [b for b in blocks if "ssh-keygen -Y verify" in b and b.startswith("V=")]
    assert len(found) == 1, "docs/formats.md should hold one ssh-keygen -Y verify recipe starting with V="
    return str(found[0])


def test_ssh_keygen_recipe_in_formats_md(tmp_path: Path) -> None:
    assert shutil.which("ssh-keygen"), (
        "ssh-keygen is needed (Debian openssh-client, `make setup` installs it)"
    )
    cli = Path(sys.executable).parent / "evidence-vault"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_VAULT")}
    env["EVIDENCE_VAULT_HOME"] = str(tmp_path / "home")
    vault = tmp_path / "vault"

    def ev(*args: str) -> None:
        subprocess.run([str(cli), *args], env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)

    ev("key", "new", "--name", "Recipe Tester", "--no-passphrase")
    ev("init", str(vault))
    ev(
        "--vault",
        str(vault),
        "add",
        str(REPO / "examples" / "media" / "photo-gps.jpg"),
        "--source",
        "a 'quoted' \"place\"",
    )
    recipe = _recipe().replace("V=/path/to/vault", f"V='{vault}'", 1)
    for n in (1, 2):
        work = tmp_path / f"line{n}"
        work.mkdir()
        script = recipe.replace("N=2\n", f"N={n}\n", 1)
        res = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True, text=True
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert 'Good "evidence-vault" signature for custodian' in res.stdout + res.stderr
        # and a changed message does not verify
        msg = work / "event.msg"
        msg.write_bytes(msg.read_bytes().replace(b'"seq":', b'"seq":1', 1))
        bad = subprocess.run(
            [
                "ssh-keygen",
                "-Y",
                "verify",
                "-f",
                "allowed_signers",
                "-I",
                "custodian",
                "-n",
                "evidence-vault",
                "-s",
                "event.sig",
            ],
            cwd=work,
            input=msg.read_bytes(),
            capture_output=True,
        )
        assert bad.returncode != 0

#!/usr/bin/env bash
# evidence-vault demo: create a key and a vault, ingest the sample media, verify, then show that
# changing one byte of a stored original (or removing the last log line) is detected.
#
# Self-contained: everything happens in a temporary directory with its own EVIDENCE_VAULT_HOME
# (keys and trust pins), so it never touches your own keys or vaults. Exit 0 when every step behaved
# as expected (including the tampered copies FAILING verification), non-zero otherwise.
#
#   bash examples/demo.sh            # uses `evidence-vault` from PATH (make demo sets PATH to .venv)
#   KEEP=1 bash examples/demo.sh     # keep the temporary directory to look around afterwards
#   EVIDENCE_VAULT_BIN="python cli.py" bash examples/demo.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
media="$here/media"
read -r -a ev <<<"${EVIDENCE_VAULT_BIN:-evidence-vault}"
export COLUMNS="${COLUMNS:-200}" # wide tables, so finding codes are not cut in a pipe

work="$(mktemp -d "${TMPDIR:-/tmp}/evidence-vault-demo.XXXXXX")"
cleanup() {
    if [[ -n "${KEEP:-}" ]]; then
        echo "(kept $work)"
    else
        chmod -R u+w "$work" 2>/dev/null || true
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# Nothing from the caller's environment: own key store, own passphrase, no default vault.
unset EVIDENCE_VAULT EVIDENCE_VAULT_KEY EVIDENCE_VAULT_PASSPHRASE
export EVIDENCE_VAULT_HOME="$work/home"
printf 'demo passphrase, not a secret\n' >"$work/passphrase"
vault="$work/vault"
evv() { "${ev[@]}" --passphrase-file "$work/passphrase" --vault "$vault" "$@"; }

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ evidence-vault'; printf ' %q' "$@"; printf '\n'; "${ev[@]}" --passphrase-file "$work/passphrase" "$@" 2>&1; }
fail() { printf '\nDEMO FAILED: %s\n' "$*" >&2; exit 1; }

files=("$media/photo-gps.jpg" "$media/photo-no-gps.jpg" "$media/screenshot.png" "$media/clip.mp4")
for f in "${files[@]}"; do [[ -f "$f" ]] || fail "sample file missing: $f"; done

step "1. Create a signing key (Ed25519, passphrase-encrypted, kept in $EVIDENCE_VAULT_HOME)"
run key new --name "Demo Custodian" --email demo@example.org

step "2. Create a vault (the genesis event names this key; the key is pinned on this machine)"
run init "$vault" --name demo-vault

step "3. Add the sample media (originals copied read-only, one signed event per file)"
run --vault "$vault" add "${files[@]}" \
    --source "examples/media of the evidence-vault repository" \
    --captured-by "Demo Custodian" --tag demo --tag sample

step "4. List the items"
run --vault "$vault" ls

step "5. Show one item (looked up by the original file: its hash is computed and found)"
run --vault "$vault" show "$media/photo-gps.jpg"

step "6. Verify the vault: every object re-hashed, every log line and signature checked"
set +e
out="$(run --vault "$vault" verify)"
rc=$?
set -e
printf '%s\n' "$out"
[[ $rc -eq 0 ]] || fail "verify of the untouched vault exited $rc (expected 0)"
grep -q '^PASS' <<<"$out" || fail "verify of the untouched vault did not say PASS"
echo "-> exit code $rc: the untouched vault verifies (PASS)."

step "7. Tamper with a COPY of the vault: change one byte of one stored original"
copy="$work/vault-tampered"
cp -a "$vault" "$copy"
id="$(sha256sum "$media/photo-no-gps.jpg" | cut -d' ' -f1)"
object="$copy/objects/sha256/${id:0:2}/$id"
[[ -f "$object" ]] || fail "expected object not found: $object"
offset=2000
byte="$(od -An -tu1 -j"$offset" -N1 "$object" | tr -d ' ')"
chmod u+w "$object"
# shellcheck disable=SC2059
printf "$(printf '\\%03o' $((byte ^ 1)))" | dd of="$object" bs=1 seek="$offset" conv=notrunc status=none
chmod a-w "$object"
echo "flipped the lowest bit of byte $offset of objects/sha256/${id:0:2}/${id:0:12}… (photo-no-gps.jpg)"
set +e
out="$(run --vault "$copy" verify)"
rc=$?
set -e
printf '%s\n' "$out"
[[ $rc -eq 1 ]] || fail "verify of the tampered copy exited $rc (expected 1)"
grep -q 'object.hash-mismatch' <<<"$out" || fail "verify did not report object.hash-mismatch"
echo "-> exit code $rc: tampering detected. The changed photo no longer matches the SHA-256 recorded"
echo "   in the signed custody log, so verification FAILS and names the object and the item."

step "8. Tamper with another COPY: remove the last custody-log line"
copy2="$work/vault-truncated"
cp -a "$vault" "$copy2"
chmod u+w "$copy2/log.jsonl"
lines="$(wc -l <"$copy2/log.jsonl")"
head -n $((lines - 1)) "$vault/log.jsonl" >"$copy2/log.jsonl"
echo "removed line $lines of log.jsonl (the last ingest event); every remaining line is still validly signed"
set +e
out="$(run --vault "$copy2" verify)"
rc=$?
set -e
printf '%s\n' "$out"
[[ $rc -eq 1 ]] || fail "verify of the truncated copy exited $rc (expected 1)"
grep -q 'log.truncated' <<<"$out" || fail "verify did not report log.truncated"
echo "-> exit code $rc: the removal is detected because this machine pinned the last log head it saw"
echo "   (in \$EVIDENCE_VAULT_HOME/vaults.json, outside the vault). Without that pin, cutting the end"
echo "   of a log is only caught against a later checkpoint or time anchor."

step "9. The original vault is untouched and still verifies"
set +e
out="$(run --vault "$vault" verify)"
rc=$?
set -e
printf '%s\n' "$out"
[[ $rc -eq 0 ]] || fail "verify of the original vault exited $rc after the tamper steps"

printf '\nDEMO OK: ingest, listing and verification work; a changed byte and a removed log line were both detected.\n'

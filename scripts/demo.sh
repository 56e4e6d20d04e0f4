#!/usr/bin/env bash
# make demo: the main job end to end on an embedded default, in a temporary
# folder, needing no services. Usage: scripts/demo.sh [path/to/fireops]
set -euo pipefail
FIREOPS=$(realpath "${1:-bin/fireops}")
work=$(mktemp -d /tmp/fireops-demo.XXXXXX)
chmod 700 "$work"
trap 'rm -rf "$work"' EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$FIREOPS" version
step "$FIREOPS" init --dir "$work/etc" --host demo
step "$FIREOPS" --config "$work/etc/fireops.yaml" config check

echo
echo "demo: a world-readable identity is refused (exit code 2):"
chmod 644 "$work/etc/identity.txt"
set +e
"$FIREOPS" --config "$work/etc/fireops.yaml" config check
rc=$?
set -e
chmod 600 "$work/etc/identity.txt"
if [ "$rc" -ne 2 ]; then echo "demo: FAILED: expected exit code 2, got $rc"; exit 1; fi
echo
echo "demo: OK"

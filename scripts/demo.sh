#!/usr/bin/env bash
# make demo: the main job end to end on an embedded default, in a private
# temporary folder, needing no services: a SQLite database under concurrent
# writes and a folder of files are snapshotted to a local destination,
# listed, verified in full and restored into a fresh folder, and the
# restored data is compared with the original.
# Usage: scripts/demo.sh [path/to/fireops]
set -euo pipefail
FIREOPS=$(realpath "${1:-bin/fireops}")
work=$(mktemp -d /tmp/fireops-demo.XXXXXX)
chmod 700 "$work"
writer=""
cleanup() { [ -n "$writer" ] && kill "$writer" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
cfg="$work/etc/fireops.yaml"
fo() { "$FIREOPS" --config "$cfg" "$@"; }

# 1. A demo dataset: training logs, a notebook, a checkpoint, a symlink.
data="$work/data/firetech"
mkdir -p "$data/runs/ppo-1" "$data/notebooks" "$data/checkpoints"
for i in $(seq 1 2000); do echo "$i,$((i * 7 % 13)),0.$((i * 31 % 97)),$((i % 5))"; done > "$data/runs/ppo-1/progress.csv"
printf '{"cells": [{"cell_type": "code", "source": ["import gymnasium as gym"]}], "nbformat": 4}\n' > "$data/notebooks/train.ipynb"
head -c 2000000 /dev/urandom > "$data/checkpoints/policy.pt"
ln -s runs/ppo-1 "$data/latest"
mkdir -p "$data/empty-dir"

# 2. A SQLite database that a writer keeps changing during the snapshot.
db="$work/data/hub.sqlite"
sqlite3 "$db" "PRAGMA journal_mode=WAL; CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, approved INT);" >/dev/null
for i in $(seq 1 200); do echo "INSERT INTO users(name, approved) VALUES('user$i', $((i % 2)));"; done | sqlite3 "$db"
( while true; do sqlite3 "$db" "PRAGMA busy_timeout=5000; INSERT INTO users(name, approved) VALUES('late', 0);" >/dev/null 2>&1 || true; sleep 0.05; done ) &
writer=$!

# 3. init writes the config, the identity and the signing key; point the
#    config at the demo data (init's config backs up the stack `fireops
#    deploy` runs to /var/backups/fireops: here the demo's folder and
#    database instead, without Docker volumes, to a folder beside it).
step "$FIREOPS" init --dir "$work/etc" --host demo
sed -i "s#paths: \[/opt/firetech\]#paths: [$data]#; s@^    - {name: jupyterhub, volume: .*@    - {name: hub, path: $db}@; s@^# state_dir: .*@state_dir: state@; /^  volumes:/d; s#remote: /var/backups/fireops#remote: backups#; s#textfile_dir: /var/lib/prometheus/node-exporter#textfile_dir: \"\"#" "$cfg"

# 3b. MongoDB, when a URI is given (FIREOPS_DEMO_MONGO_URI, or the test
#     FerretDB of scripts/test-deps.sh): a demo database is backed up too and
#     restore-tested; without one this step is skipped.
mongo_uri="${FIREOPS_DEMO_MONGO_URI:-${FIREOPS_TEST_MONGO_URI:-}}"
if [ -z "$mongo_uri" ] && [ -f .cache/testenv.sh ]; then
  mongo_uri=$(bash -c '. .cache/testenv.sh; echo "${FIREOPS_TEST_MONGO_URI:-}"')
fi
mongo_db=""
if [ -n "$mongo_uri" ]; then
  mongo_db="fireops_demo_$$"
  (umask 077 && printf '%s\n' "$mongo_uri" > "$work/etc/mongo-uri")
  go run ./internal/cmd/demoseed -uri-file "$work/etc/mongo-uri" -db "$mongo_db" -docs 2000
  trap 'go run ./internal/cmd/demoseed -uri-file "$work/etc/mongo-uri" -db "$mongo_db" -drop >/dev/null 2>&1 || true; cleanup' EXIT
  sed -i "s@^  mongo: .*@  mongo: {uri_file: mongo-uri, databases: [$mongo_db]}@" "$cfg"
  echo "MongoDB: backing up database $mongo_db (2000 documents)"
else
  sed -i "/^  mongo: /d" "$cfg"
  echo "MongoDB: no URI (set FIREOPS_DEMO_MONGO_URI or run scripts/test-deps.sh): the mongo part is skipped"
fi
step fo config check -q >/dev/null && echo "config: valid"

step fo snapshot
kill "$writer"; wait "$writer" 2>/dev/null || true; writer=""
step fo snapshot            # nothing changed in the files: that part is reused
step fo snapshots
step fo verify --level full
if [ -n "$mongo_db" ]; then
  step fo verify --level restore-test   # every part, MongoDB into a scratch database, dropped after
fi
step fo restore latest --part files:stack --part sqlite:hub --to "$work/restored"

# 4. The restored data equals the original.
echo
echo "comparing the restored files with the original:"
diff -r --no-dereference "$data" "$work/restored/files-stack$data"
[ "$(readlink "$work/restored/files-stack$data/latest")" = runs/ppo-1 ] || { echo "demo: FAILED: symlink"; exit 1; }
echo "  files: identical (contents, symlink, empty folder)"
orig=$(sqlite3 "$db" "PRAGMA integrity_check; SELECT count(*) FROM users;" | tr '\n' ' ')
rest=$(sqlite3 "$work/restored/hub.sqlite" "PRAGMA integrity_check; SELECT count(*) FROM users;" | tr '\n' ' ')
echo "  sqlite: original: $orig restored: $rest"
[ "$orig" = "$rest" ] || { echo "demo: FAILED: the restored database differs"; exit 1; }
echo
echo "demo: OK: snapshot, verify and restore round trip passed"

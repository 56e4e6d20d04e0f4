#!/usr/bin/env bash
# Checks `fireops gpu check` against the real NVIDIA driver on a GPU machine
# (docs/gpu.md). The test machine has no GPU, so CI covers NVML with go-nvml's
# mock; this script is the check that the real library says the same things
# as nvidia-smi.
#
# It builds fireops (cgo: go-nvml loads libnvidia-ml with dlopen), then
#   1. runs the real-NVML Go test (go test -run TestRealNVML ./pkg/gpucheck/),
#   2. runs `fireops gpu check --json` and `fireops gpu check` (table) with a
#      throwaway config that writes the metrics textfile, and lints it with
#      promtool when present,
#   3. runs `nvidia-smi -q` and `nvidia-smi --query-gpu=...` and compares,
#      GPU by GPU: count, UUID, name, bus id, memory total, temperature
#      (within 5°C), persistence mode, MIG mode, driver version, volatile
#      uncorrected ECC errors, retired pages pending, remapped rows pending
#      and failure.
# Everything lands in OUT (default ./gpu-smoke-out, or $OUT when set, e.g.
# on the device machine): fireops-gpu-check.json/.txt/.stderr, the .prom
# file, nvidia-smi-q.txt, nvidia-smi-query.csv, compare.txt, summary.txt.
#
# Exit status: 0 when fireops and nvidia-smi agree (whatever the checks
# found: a host without an nvidia container runtime fails its gpu check and
# that is reported, not an error here), 1 when they disagree or a step
# broke. Usage: scripts/gpu-smoke.sh [extra `fireops gpu check` flags...]
#   e.g. scripts/gpu-smoke.sh --require-container-runtime=false
#        scripts/gpu-smoke.sh --smoke-image nvidia/cuda:12.4.1-base-ubuntu22.04
#
# --hub [FLAGS...] then runs scripts/gpu-smoke-hub.sh FLAGS... with the
# fireops just built: two user servers of the deployed stack, each checked
# to see exactly the GPUs the hub's GPU policy assigned it (see that
# script), its output in the same OUT.
#   e.g. sudo scripts/gpu-smoke.sh --hub --deploy
set -euo pipefail

check_args=() hub_args=() hub=0
while [ $# -gt 0 ]; do
	if [ "$1" = --hub ]; then
		hub=1
		shift
		hub_args=("$@")
		break
	fi
	check_args+=("$1")
	shift
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/gpu-smoke-out}
mkdir -p "$OUT"
cd "$ROOT"
export CGO_ENABLED=1 CGO_CFLAGS="${CGO_CFLAGS:--O2 -Wno-deprecated-declarations}"

say() { echo "gpu-smoke: $*" | tee -a "$OUT/summary.txt"; }
: >"$OUT/summary.txt"
status=0

command -v nvidia-smi >/dev/null || { say "nvidia-smi not found: run this on a GPU machine"; exit 1; }
command -v python3 >/dev/null || { say "python3 not found: it compares the outputs"; exit 1; }

say "building fireops"
go build -o "$OUT/fireops" ./cmd/fireops

say "go test -run TestRealNVML ./pkg/gpucheck/"
if timeout 300 go test -count=1 -v -run 'TestRealNVML' ./pkg/gpucheck/ >"$OUT/go-test-real-nvml.txt" 2>&1; then
	say "real-NVML test passed"
else
	say "real-NVML test FAILED (see go-test-real-nvml.txt)"
	status=1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/textfile"
printf 'metrics:\n  textfile_dir: %s\n' "$tmp/textfile" >"$tmp/fireops.yaml"

set +e
timeout 120 "$OUT/fireops" --config "$tmp/fireops.yaml" gpu check --json ${check_args[@]+"${check_args[@]}"} \
	>"$OUT/fireops-gpu-check.json" 2>"$OUT/fireops-gpu-check.stderr"
rc=$?
timeout 120 "$OUT/fireops" --config "$tmp/fireops.yaml" gpu check --no-metrics ${check_args[@]+"${check_args[@]}"} \
	>"$OUT/fireops-gpu-check.txt" 2>>"$OUT/fireops-gpu-check.stderr"
rc_text=$?
set -e
say "fireops gpu check exited with $rc (json) and $rc_text (table); 0 pass, 3 a check failed"
case $rc in
0 | 3) ;;
*) say "unexpected exit code $rc (see fireops-gpu-check.stderr)"; status=1 ;;
esac
[ "$rc" = "$rc_text" ] || { say "json and table runs disagree on the exit code"; status=1; }

if [ -f "$tmp/textfile/fireops_gpu_check.prom" ]; then
	cp "$tmp/textfile/fireops_gpu_check.prom" "$OUT/"
	if command -v promtool >/dev/null; then
		if promtool check metrics <"$OUT/fireops_gpu_check.prom" >"$OUT/promtool.txt" 2>&1; then
			say "promtool check metrics: ok"
		else
			say "promtool check metrics FAILED (see promtool.txt)"
			status=1
		fi
	fi
else
	say "no metrics textfile was written"
	status=1
fi

timeout 120 nvidia-smi -q >"$OUT/nvidia-smi-q.txt" 2>&1 || say "nvidia-smi -q exited with $?"
# Fields every supported driver knows, then the ones newer drivers added
# (queried one by one, so an unknown field only blanks that column).
base=index,uuid,name,pci.bus_id,memory.total,temperature.gpu,persistence_mode,driver_version
extra=(mig.mode.current ecc.errors.uncorrected.volatile.total retired_pages.pending remapped_rows.pending remapped_rows.failure)
timeout 60 nvidia-smi --query-gpu="$base" --format=csv,noheader,nounits >"$OUT/nvidia-smi-query.csv"
for f in "${extra[@]}"; do
	timeout 60 nvidia-smi --query-gpu="$f" --format=csv,noheader,nounits >"$tmp/extra-$f.csv" 2>/dev/null ||
		: >"$tmp/extra-$f.csv"
done

if python3 - "$OUT/fireops-gpu-check.json" "$OUT/nvidia-smi-query.csv" "$tmp" "${extra[@]}" >"$OUT/compare.txt" <<'PY'; then
import json, sys
report_path, csv_path, tmp, *extra = sys.argv[1:]
rep = json.load(open(report_path))
rows = [[c.strip() for c in line.split(",")] for line in open(csv_path) if line.strip()]
cols = {}
for f in extra:
    try:
        cols[f] = [l.strip() for l in open(f"{tmp}/extra-{f}.csv") if l.strip()]
    except OSError:
        cols[f] = []
bad = []
def check(what, ok, fo, smi):
    print(f"{'ok ' if ok else 'BAD'} {what}: fireops={fo!r} nvidia-smi={smi!r}")
    if not ok:
        bad.append(what)
gpus = rep.get("gpus") or []
check("gpu count", len(gpus) == len(rows), len(gpus), len(rows))
if rows:
    check("driver", rep.get("driver_version") == rows[0][7], rep.get("driver_version"), rows[0][7])
def checks_for(i, name):
    return [c for c in rep["checks"] if c.get("gpu") == i and c["name"] == name]
for i, g in enumerate(gpus[:len(rows)]):
    r = rows[i]
    p = f"gpu {i} "
    check(p + "uuid", g["uuid"] == r[1], g["uuid"], r[1])
    check(p + "name", g["name"] == r[2], g["name"], r[2])
    check(p + "bus id", g["bus_id"].lower().lstrip("0") == r[3].lower().lstrip("0"), g["bus_id"], r[3])
    check(p + "memory total MiB", g["memory_total_bytes"] // (1 << 20) == int(r[4]), g["memory_total_bytes"] // (1 << 20), r[4])
    t = g.get("temperature_c")
    check(p + "temperature ±5°C", t is not None and r[5].isdigit() and abs(t - int(r[5])) <= 5, t, r[5])
    pm = g.get("persistence_mode")
    check(p + "persistence", pm is not None and pm == (r[6] == "Enabled"), pm, r[6])
    def col(f):
        v = cols.get(f, [])
        return v[i] if i < len(v) else None
    mig = col("mig.mode.current")
    if mig and not mig.startswith("[N/A]"):
        check(p + "mig mode", (g.get("mig_mode") or "") == mig.lower(), g.get("mig_mode"), mig)
    ecc = col("ecc.errors.uncorrected.volatile.total")
    if ecc and ecc.isdigit():
        fo = (g.get("ecc") or {}).get("volatile_uncorrected")
        check(p + "volatile uncorrected ECC", fo == int(ecc), fo, ecc)
    rp = col("retired_pages.pending")
    if rp in ("Yes", "No"):
        fo = g.get("retired_pages_pending")
        check(p + "retired pages pending", fo == (rp == "Yes"), fo, rp)
    for f, key in (("remapped_rows.pending", "pending"), ("remapped_rows.failure", "failure")):
        v = col(f)
        if v in ("Yes", "No"):
            fo = (g.get("remapped_rows") or {}).get(key)
            check(p + f, fo == (v == "Yes"), fo, v)
    if not checks_for(i, "temperature"):
        check(p + "has a temperature check", False, None, None)
print(f"{len(bad)} disagreements" + (": " + ", ".join(bad) if bad else ""))
sys.exit(1 if bad else 0)
PY
	say "fireops and nvidia-smi agree ($(tail -1 "$OUT/compare.txt"))"
else
	say "fireops and nvidia-smi DISAGREE: $(tail -1 "$OUT/compare.txt") (see compare.txt)"
	status=1
fi

if [ "$hub" = 1 ]; then
	say "scripts/gpu-smoke-hub.sh ${hub_args[*]}"
	export OUT FIREOPS="$OUT/fireops"
	if ! "$ROOT/scripts/gpu-smoke-hub.sh" ${hub_args[@]+"${hub_args[@]}"}; then
		status=1
	fi
fi

say "outputs in $OUT"
exit $status

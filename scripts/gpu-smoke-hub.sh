#!/usr/bin/env bash
# Checks the GPU policy of the deployed stack (stack.hub.gpus; docs/deploy.md,
# "GPU sharing") on a machine with NVIDIA GPUs: two user servers, started
# through the real hub, must each see exactly the GPUs the hub assigned
# them. scripts/gpu-smoke.sh --hub runs it after its NVML checks; run it
# alone with a fireops on PATH (or FIREOPS=/path/to/fireops).
#
#   1. with --deploy, runs `fireops deploy` first (it builds the notebook
#      image, and so runs the image's CUDA check, when the tag is missing);
#   2. creates two hub users (gpusmokea, gpusmokeb; --user-a/--user-b:
#      lowercase letters and digits, users that do not exist yet) and
#      starts A's server, then B's, through the hub's REST API with the
#      fireops service token, with --options-a/--options-b as their
#      user_options (JSON, e.g. '{"gpu_profile": "cpu"}'; default none, so
#      the grants of stack.hub.gpus decide), and waits until each is ready;
#   3. compares, for each server, the devices `nvidia-smi -L` lists inside
#      its container with those the hub assigned it (the container's device
#      requests, mapped through the host's `nvidia-smi -L`, MIG instances
#      included): each must see exactly its own, and nothing without;
#   4. runs the notebook image's CUDA check on the GPUs of each server that
#      has some (python /opt/fireops/cuda-check.py --require-gpu, with
#      --torch/--tensorflow when the image has them);
#   5. fails when A and B share a device although no other user server was
#      running, the host has two or more and neither got every GPU (the
#      default policy gives each its own while there are enough; pass
#      --allow-shared when the config gives both the same GPUs on purpose),
#      and when neither got a GPU (nothing was checked);
#   6. stops both servers and removes their containers, volumes and hub
#      users (--keep leaves them).
# It reads the config at --config (default $FIREOPS_CONFIG, else
# /etc/fireops/fireops.yaml): hub.api_url, and hub.token_file or else
# stack.dir/secrets/hub-fireops-token, so it runs as root on the stack's host.
# Outputs land in OUT (default ./gpu-smoke-out): hub-smoke.txt, config.json,
# nvidia-smi-L.txt (the host), nvidia-smi-<user>.txt, cuda-check-<user>.txt;
# summary lines are appended to summary.txt.
#
# Exit status: 0 when every check passed, 1 when one failed, 2 bad flags.
#   e.g. sudo scripts/gpu-smoke-hub.sh
#        sudo scripts/gpu-smoke-hub.sh --deploy --options-b '{"gpu_profile": "cpu"}'
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/gpu-smoke-out}
FIREOPS=${FIREOPS:-fireops}
config=${FIREOPS_CONFIG:-/etc/fireops/fireops.yaml}
deploy=0 keep=0 allow_shared=0
user_a=gpusmokea user_b=gpusmokeb options_a='{}' options_b='{}'

usage() {
	echo "gpu-smoke-hub: $*" >&2
	echo "usage: scripts/gpu-smoke-hub.sh [--config PATH] [--deploy] [--user-a NAME] [--user-b NAME] [--options-a JSON] [--options-b JSON] [--allow-shared] [--keep]" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
	--deploy) deploy=1 ;;
	--keep) keep=1 ;;
	--allow-shared) allow_shared=1 ;;
	--config | --user-a | --user-b | --options-a | --options-b)
		[ $# -ge 2 ] || usage "$1 needs a value"
		case $1 in
		--config) config=$2 ;;
		--user-a) user_a=$2 ;;
		--user-b) user_b=$2 ;;
		--options-a) options_a=$2 ;;
		--options-b) options_b=$2 ;;
		esac
		shift
		;;
	*) usage "unknown flag $1" ;;
	esac
	shift
done
for u in "$user_a" "$user_b"; do
	# DockerSpawner names the container jupyter-<user> for such names only.
	[[ $u =~ ^[a-z0-9]+$ ]] || usage "user name $u: use lowercase letters and digits only"
done
[ "$user_a" != "$user_b" ] || usage "--user-a and --user-b must differ"

mkdir -p "$OUT"
say() { echo "gpu-smoke: hub: $*" | tee -a "$OUT/summary.txt"; }

for tool in docker nvidia-smi python3 "$FIREOPS"; do
	command -v "$tool" >/dev/null || { say "FAIL $tool not found"; exit 1; }
done
[ -r "$config" ] || { say "FAIL cannot read the config $config: give it with --config PATH"; exit 1; }
if [ "$deploy" = 1 ]; then
	say "fireops deploy (it builds the notebook image, and runs its CUDA check, when the tag is missing)"
	if ! "$FIREOPS" --config "$config" deploy >"$OUT/deploy.txt" 2>&1; then
		say "FAIL fireops deploy (see deploy.txt)"
		exit 1
	fi
fi
if ! "$FIREOPS" --config "$config" config check --json >"$OUT/config.json" 2>"$OUT/config-check.stderr"; then
	say "FAIL fireops config check (see config-check.stderr)"
	exit 1
fi
timeout 60 nvidia-smi -L >"$OUT/nvidia-smi-L.txt"

exec python3 - "$OUT" "$user_a" "$options_a" "$user_b" "$options_b" "$allow_shared" "$keep" <<'PY'
import json, os, re, subprocess, sys, time, urllib.error, urllib.request

out, user_a, opts_a, user_b, opts_b, allow_shared, keep = sys.argv[1:]
log = open(f"{out}/hub-smoke.txt", "w")
failures = []


def say(msg):
    line = f"gpu-smoke: hub: {msg}"
    print(line, flush=True)
    log.write(line + "\n")
    with open(f"{out}/summary.txt", "a") as s:
        s.write(line + "\n")


def fail(msg):
    failures.append(msg)
    say("FAIL " + msg)


cfg = json.load(open(f"{out}/config.json"))["config"]
api = cfg["hub"]["api_url"].rstrip("/")
token_file = cfg["hub"].get("token_file") or os.path.join(cfg["stack"]["dir"], "secrets", "hub-fireops-token")
try:
    token = open(token_file).read().strip()
except OSError as e:
    say(f"FAIL cannot read the hub token {token_file}: {e} (run as root on the stack's host, after fireops deploy)")
    sys.exit(1)


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, method=method,
                                 headers={"Authorization": "token " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")[:500]
    except OSError as e:
        return 0, str(e)


def server(name):
    st, u = call("GET", f"/users/{name}")
    return (u.get("servers") or {}).get("") if st == 200 else None


def wait(name, done, secs):
    deadline = time.time() + secs
    s = server(name)
    while not done(s) and time.time() < deadline:
        time.sleep(3)
        s = server(name)
    return s


def docker(*args, timeout=120):
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, 124, "", f"timed out after {timeout}s")


def parse_list(text):
    """GPUs of nvidia-smi -L: index, UUID and MIG instances (index, UUID)."""
    gpus = []
    for line in text.splitlines():
        m = re.match(r"GPU (\d+): .*\(UUID: (GPU-[^)\s]+)\)", line)
        if m:
            gpus.append({"index": m.group(1), "uuid": m.group(2), "migs": []})
            continue
        m = re.match(r"\s+MIG .*Device\s+(\d+): \(UUID: (MIG-[^)\s]+)\)", line)
        if m and gpus:
            gpus[-1]["migs"].append((m.group(1), m.group(2)))
    return gpus


def leaves(gpus):
    """What CUDA can use: a GPU's MIG instances, or the GPU."""
    return {u for g in gpus for u in ([u for _, u in g["migs"]] or [g["uuid"]])}


host = parse_list(open(f"{out}/nvidia-smi-L.txt").read())
host_leaves = leaves(host)
say(f"the host has {len(host)} GPUs, {len(host_leaves)} usable devices (MIG instances counted)")


def label(u):
    for g in host:
        if u == g["uuid"]:
            return f"GPU {g['index']} ({u})"
        for i, m in g["migs"]:
            if u == m:
                return f"MIG {g['index']}:{i} ({u})"
    return u


def fmt(devs):
    return ", ".join(sorted(label(u) for u in devs)) or "no GPU"


def expected(requests):
    """The devices a container's device requests give, by UUID."""
    exp = set()
    for r in requests or []:
        if r.get("Count") == -1:
            return set(host_leaves)
        for d in r.get("DeviceIDs") or []:
            found = set()
            for g in host:
                if d in (g["index"], g["uuid"]):
                    found |= leaves([g])
                for i, m in g["migs"]:
                    if d in (m, f"{g['index']}:{i}"):
                        found.add(m)
            exp |= found or {"unknown id " + d}
    return exp


mine = {f"jupyter-{user_a}", f"jupyter-{user_b}"}
ps = docker("ps", "--filter", "name=^/jupyter-", "--format", "{{.Names}}")
others = [n for n in ps.stdout.split() if n not in mine]
say(f"other running user servers: {', '.join(others) or 'none'}")

results = {}
created = []
for name, opts in ((user_a, opts_a), (user_b, opts_b)):
    try:
        options = json.loads(opts)
    except ValueError as e:
        fail(f"{name}: user_options {opts!r} is not JSON: {e}")
        continue
    cname = f"jupyter-{name}"
    leftover = [x for x in (docker("container", "inspect", cname), docker("volume", "inspect", f"jupyterhub-user-{name}")) if x.returncode == 0]
    st, body = call("POST", f"/users/{name}")
    if st == 409 or leftover:
        fail(f"{name}: the user, its container or its volume exists already: choose other names "
             "(--user-a/--user-b), or remove a leftover of a --keep run by hand")
        continue
    if st != 201:
        fail(f"{name}: creating the hub user: HTTP {st}: {body} (is the hub up at {api}?)")
        continue
    created.append(name)
    st, body = call("POST", f"/users/{name}/server", options)
    if st not in (201, 202):
        fail(f"{name}: starting the server with {options}: HTTP {st}: {body}")
        continue
    s = wait(name, lambda s: s is None or s.get("ready"), 900)
    if not s or not s.get("ready"):
        fail(f"{name}: the server did not start (the hub's log says why: "
             f"docker logs $(docker ps -qf name=jupyterhub) | grep -i gpu)")
        continue
    insp = docker("inspect", cname)
    if insp.returncode != 0:
        fail(f"{name}: no container {cname}: {insp.stderr.strip()}")
        continue
    requests = json.loads(insp.stdout)[0]["HostConfig"].get("DeviceRequests") or []
    want = expected(requests)
    ex = docker("exec", cname, "nvidia-smi", "-L")
    with open(f"{out}/nvidia-smi-{name}.txt", "w") as f:
        f.write(ex.stdout + ex.stderr)
    text = ex.stdout + ex.stderr
    if ex.returncode == 0:
        seen = leaves(parse_list(ex.stdout))
    elif ex.returncode in (126, 127) or "executable file not found" in text or "No devices were found" in text:
        seen = set()  # no GPU: the toolkit puts no nvidia-smi into a container without one
    else:
        fail(f"{name}: nvidia-smi -L in {cname} failed (exit {ex.returncode}): {text.strip()[:300]}")
        continue
    results[name] = (requests, want)
    if seen == want:
        say(f"ok {name}: sees exactly the GPUs the hub assigned: {fmt(seen)}")
    else:
        fail(f"{name}: assigned {fmt(want)} but sees {fmt(seen)}")
    if not seen:
        continue
    probe = docker("exec", cname, "python", "-c",
                   "import importlib.util as u; print(' '.join(f for f, m in (('--torch', 'torch'), "
                   "('--tensorflow', 'tensorflow')) if u.find_spec(m)))")
    chk = docker("exec", cname, "python", "/opt/fireops/cuda-check.py", "--require-gpu", *probe.stdout.split(), timeout=900)
    with open(f"{out}/cuda-check-{name}.txt", "w") as f:
        f.write(chk.stdout + chk.stderr)
    if chk.returncode == 0:
        say(f"ok {name}: the image's CUDA check passes on its GPUs ({' '.join(probe.stdout.split()) or 'libraries only'})")
    else:
        fail(f"{name}: the image's CUDA check failed on its GPUs (see cuda-check-{name}.txt)")

if len(results) == 2:
    # What each was assigned (what it sees was compared above).
    (ra, sa), (rb, sb) = results[user_a], results[user_b]
    every = any(r.get("Count") == -1 for r in ra + rb)
    if not sa and not sb:
        fail("neither server got a GPU: nothing was checked (grant them GPUs in stack.hub.gpus, or choose profiles with --options-a/--options-b)")
    elif sa & sb and not every and not others and len(host_leaves) >= 2 and allow_shared != "1":
        fail(f"{user_a} and {user_b} share {fmt(sa & sb)} although no other user server ran: the policy should "
             "give each its own GPU while there are enough (--allow-shared when the config gives them the same GPUs)")
    else:
        say(f"{user_a}: {fmt(sa)}; {user_b}: {fmt(sb)}")

if keep != "1":
    for name in created:
        call("DELETE", f"/users/{name}/server")
        wait(name, lambda s: s is None, 300)
        docker("rm", "-f", f"jupyter-{name}")
        call("DELETE", f"/users/{name}")
        docker("volume", "rm", f"jupyterhub-user-{name}")
    if created:
        say(f"removed {', '.join(created)}: servers, containers, volumes and hub users (--keep leaves them)")

if failures:
    say(f"{len(failures)} failed")
    sys.exit(1)
say("passed")
PY

#!/usr/bin/env bash
# Installs and starts the real components fireops's tests use (docs/design.md
# §10) and writes their settings to .cache/testenv.sh in the repository root.
#
#   - Debian packages: Docker Engine, JupyterHub, Prometheus tools, age, zstd, ...
#   - dockerd, started in the background if `docker info` fails
#   - FerretDB v1.24.2 (SQLite backend) on 127.0.0.1:27117, built from the
#     launcher in tools/ferretdb (its own Go module)
#   - JupyterHub 3.0.0 (Debian) on 127.0.0.1:18000 with an admin API token
#   - Debian's prometheus, prometheus-alertmanager and prometheus-node-exporter:
#     checked to run; the live monitoring test (cmd/fireops TestLiveMonitoring)
#     starts its own on free loopback ports with the configs deploy renders
#
# Idempotent and quiet: it prints one line per thing it had to install or
# start, and nothing when everything was ready. Runs as root.
#
# Environment:
#   FIREOPS_CACHE            state folder (default ~/.cache/fireops): binaries,
#                            data, logs, pid files, the hub token
#   FIREOPS_TEST_MONGO_PORT  FerretDB port (default 27117; the next free port
#                            up to 27167 when it is taken by something else)
#   FIREOPS_TEST_HUB_PORT    hub port (default 18000); the proxy API uses
#                            port+1 and the hub itself port+81
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${FIREOPS_CACHE:-$HOME/.cache/fireops}
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

PKGS=(docker.io jupyterhub python3-bcrypt prometheus prometheus-alertmanager
	prometheus-node-exporter age zstd sqlite3 restic tar node-configurable-http-proxy
	systemd jq rclone shellcheck) # systemd-analyze verify checks the units in systemd/; jq, rclone: the runbook; shellcheck: scripts/gpu-smoke*.sh

say() { echo "test-deps: $*"; }
die() {
	echo "test-deps: error: $*" >&2
	exit 1
}
# show_log FILE: the end of a log, indented, on stderr.
show_log() { if [ -f "$1" ]; then tail -n 20 "$1" | sed 's/^/    /' >&2; fi; }

need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root (run: sudo $0)"; }

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# alive PIDFILE EXE: the process in PIDFILE runs and its command line starts with EXE.
alive() {
	local pid
	[ -s "$1" ] || return 1
	pid=$(<"$1")
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2"
}

# stop PIDFILE: TERM the process, KILL it after 10 s.
stop() {
	local pid
	[ -s "$1" ] || return 0
	pid=$(<"$1")
	kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
}

# wait_for SECONDS CMD...: retry CMD every 0.2 s until it succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.2
	done
}

# write_if_changed FILE MODE: stdin to FILE (atomically) unless FILE already
# holds exactly that; returns 1 when nothing changed.
write_if_changed() {
	local tmp
	tmp=$(mktemp "$1.XXXXXX")
	cat >"$tmp"
	chmod "$2" "$tmp"
	if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
		rm -f "$tmp"
		return 1
	fi
	mv -f "$tmp" "$1"
}

mkdir -p "$CACHE/bin"
chmod 700 "$CACHE"
# One run at a time (parallel make targets, several shells).
# Background daemons get 9>&- so that they do not keep holding the lock.
exec 9>"$CACHE/test-deps.lock"
flock -w 900 9 || die "another scripts/test-deps.sh has held $CACHE/test-deps.lock for 15 minutes"

# --- Debian packages ---------------------------------------------------------

# apt_busy: another apt/dpkg run holds one of their locks (fcntl locks, listed
# in /proc/locks by device:inode).
apt_busy() {
	local f ino
	for f in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock; do
		[ -e "$f" ] || continue
		ino=$(stat -c %i "$f")
		grep -qE "[0-9a-f]+:[0-9a-f]+:$ino " /proc/locks && return 0
	done
	return 1
}

missing_pkgs() {
	# dpkg-query fails when one of them is unknown: that one is missing.
	{ dpkg-query -W -f='${Package} ${Status}\n' "${PKGS[@]}" 2>/dev/null || true; } |
		awk '$NF == "installed" { ok[$1] = 1 } END { n = split(pkgs, p, " "); for (i = 1; i <= n; i++) if (!ok[p[i]]) print p[i] }' pkgs="${PKGS[*]}"
}

missing=$(missing_pkgs)
if [ -n "$missing" ] && apt_busy; then
	# Another apt run (a provisioning step, say) may be installing them now.
	say "waiting for another apt/dpkg run to finish"
	wait_for 900 bash -c "$(declare -f apt_busy); ! apt_busy" || die "apt/dpkg stayed locked for 15 minutes"
	missing=$(missing_pkgs)
fi
if [ -n "$missing" ]; then
	need_root "installing packages"
	say "installing apt packages: ${missing//$'\n'/ }"
	log="$CACHE/apt.log"
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086 # $missing is a list of package names
	{
		apt-get -o DPkg::Lock::Timeout=600 update &&
			apt-get -o DPkg::Lock::Timeout=600 install -y $missing
	} >"$log" 2>&1 || {
		show_log "$log"
		die "apt-get failed (log: $log)"
	}
	missing=$(missing_pkgs)
	[ -z "$missing" ] || die "still missing after apt-get install: ${missing//$'\n'/ } (log: $log)"
fi

# --- Docker Engine -----------------------------------------------------------

DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
export DOCKER_HOST
docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

if ! docker_ok; then
	[ "$DOCKER_HOST" = unix:///var/run/docker.sock ] ||
		die "Docker Engine at DOCKER_HOST=$DOCKER_HOST does not answer (docker info); start it or unset DOCKER_HOST"
	need_root "starting dockerd"
	log="$CACHE/dockerd.log"
	started=
	# The defaults (overlay2, bridge, iptables) work in this project's VMs;
	# the second set is for kernels without overlayfs or iptables.
	for flags in "" "--storage-driver=vfs --iptables=false --ip6tables=false --bridge=none"; do
		# shellcheck disable=SC2086
		PATH=$SYS_PATH setsid dockerd $flags </dev/null >>"$log" 2>&1 9>&- &
		pid=$!
		deadline=$((SECONDS + 30))
		while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
			if docker_ok; then
				started=$pid
				break 2
			fi
			sleep 0.2
		done
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ -z "$started" ]; then
		show_log "$log"
		die "dockerd did not start (log: $log)"
	fi
	say "started dockerd${flags:+ $flags} (pid $started, log: $log)"
fi

# --- Docker Compose (CLI plugin) --------------------------------------------

# Docker Compose v5.6.0 built from the Go module proxy (design.md §10): `go
# install` refuses it (its go.mod has an exclude block), so the module source
# is copied out of the module cache and built there. Cold build measured at
# about 1m45s on 2 cores (4 GiB of Go build cache); the binary is cached.
COMPOSE_VERSION=v5.6.0
COMPOSE_BIN=$CACHE/bin/docker-compose-$COMPOSE_VERSION
COMPOSE_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose

if [ ! -x "$COMPOSE_BIN" ]; then
	GO=$(command -v go || echo /usr/local/go/bin/go)
	[ -x "$GO" ] || die "go not found (needed to build Docker Compose)"
	say "building Docker Compose $COMPOSE_VERSION into $COMPOSE_BIN (a few minutes, once)"
	log="$CACHE/compose-build.log"
	(
		set -euo pipefail
		moddir=$(cd "$CACHE" && GOWORK=off GOFLAGS=-mod=mod "$GO" mod download -json "github.com/docker/compose/v5@$COMPOSE_VERSION" |
			sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[ -d "$moddir" ] || {
			echo "module source not found after go mod download"
			exit 1
		}
		src=$(mktemp -d "$CACHE/compose-src.XXXXXX")
		trap 'rm -rf "$src"' EXIT
		cp -R "$moddir/." "$src"
		chmod -R u+w "$src"
		cd "$src"
		GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 "$GO" build -trimpath \
			-ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" \
			-o "$COMPOSE_BIN.new" ./cmd
	) >"$log" 2>&1 || {
		show_log "$log"
		die "building Docker Compose $COMPOSE_VERSION failed (log: $log)"
	}
	mv -f "$COMPOSE_BIN.new" "$COMPOSE_BIN"
fi
if ! cmp -s "$COMPOSE_BIN" "$COMPOSE_PLUGIN"; then
	need_root "installing the Docker Compose plugin"
	install -D -m 0755 "$COMPOSE_BIN" "$COMPOSE_PLUGIN"
	say "installed Docker Compose $COMPOSE_VERSION as $COMPOSE_PLUGIN"
fi

# --- FerretDB ----------------------------------------------------------------

FDB_SRC=$ROOT/tools/ferretdb
FDB_BIN=$CACHE/bin/ferretdb
FDB_DIR=$CACHE/ferretdb
mkdir -p "$FDB_DIR/data"

fdb_hash=$(cd "$FDB_SRC" && cat go.mod go.sum ./*.go | sha256sum | cut -d' ' -f1)
rebuilt=
if [ ! -x "$FDB_BIN" ] || [ "$(cat "$FDB_BIN.hash" 2>/dev/null)" != "$fdb_hash" ]; then
	GO=$(command -v go || echo /usr/local/go/bin/go)
	[ -x "$GO" ] || die "go not found (needed to build tools/ferretdb)"
	say "building the FerretDB launcher (tools/ferretdb) into $FDB_BIN"
	log="$CACHE/ferretdb-build.log"
	(cd "$FDB_SRC" && GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 "$GO" build -trimpath -o "$FDB_BIN.new" .) >"$log" 2>&1 || {
		show_log "$log"
		die "building tools/ferretdb failed (log: $log)"
	}
	mv -f "$FDB_BIN.new" "$FDB_BIN"
	echo "$fdb_hash" >"$FDB_BIN.hash"
	rebuilt=1
fi

fdb_port=$(cat "$FDB_DIR/port" 2>/dev/null || true)
if [ -n "$rebuilt" ] || [ -z "$fdb_port" ] || ! alive "$FDB_DIR/pid" "$FDB_BIN" || ! port_open "$fdb_port"; then
	stop "$FDB_DIR/pid"
	base=${FIREOPS_TEST_MONGO_PORT:-27117}
	fdb_port=
	for p in $(seq "$base" $((base + 50))); do
		if ! port_open "$p"; then
			fdb_port=$p
			break
		fi
		[ -z "${FIREOPS_TEST_MONGO_PORT:-}" ] || break # an explicit port must be free
	done
	[ -n "$fdb_port" ] || die "no free port for FerretDB from $base (set FIREOPS_TEST_MONGO_PORT)"
	log="$FDB_DIR/ferretdb.log"
	setsid "$FDB_BIN" -listen "127.0.0.1:$fdb_port" -dir "$FDB_DIR/data" </dev/null >>"$log" 2>&1 9>&- &
	echo $! >"$FDB_DIR/pid"
	echo "$fdb_port" >"$FDB_DIR/port"
	wait_for 30 bash -c "kill -0 $! 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$fdb_port) 2>/dev/null" || {
		show_log "$log"
		die "FerretDB did not listen on 127.0.0.1:$fdb_port (log: $log)"
	}
	say "started FerretDB on 127.0.0.1:$fdb_port (pid $(<"$FDB_DIR/pid"), data: $FDB_DIR/data)"
fi

# --- JupyterHub --------------------------------------------------------------

HUB_DIR=$CACHE/hub
HUB_PORT=${FIREOPS_TEST_HUB_PORT:-18000}
HUB_API=http://127.0.0.1:$HUB_PORT/hub/api
mkdir -p "$HUB_DIR"
chmod 700 "$HUB_DIR"

# Debian's configurable-http-proxy finds its modules (http-proxy, winston, ...)
# only with Debian's nodejs; point any other node at them.
chp=$(readlink -f /usr/bin/configurable-http-proxy)
NODE_PATH=${chp%/configurable-http-proxy/bin/configurable-http-proxy}
[ -d "$NODE_PATH/http-proxy" ] || die "configurable-http-proxy's node modules not found next to $chp"

if [ ! -s "$HUB_DIR/api-token" ]; then
	(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$HUB_DIR/api-token")
	say "generated the hub API token ($HUB_DIR/api-token)"
fi
chmod 600 "$HUB_DIR/api-token"
HUB_TOKEN=$(<"$HUB_DIR/api-token")

hub_config_changed=
write_if_changed "$HUB_DIR/jupyterhub_config.py" 600 <<EOF && hub_config_changed=1
# Generated by scripts/test-deps.sh: a JupyterHub for fireops's tests.
import pathlib

c = get_config()  # noqa: F821
d = pathlib.Path("$HUB_DIR")

c.JupyterHub.bind_url = "http://127.0.0.1:$HUB_PORT"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:$((HUB_PORT + 81))"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:$((HUB_PORT + 1))"
c.ConfigurableHTTPProxy.command = ["$chp"]
c.ConfigurableHTTPProxy.pid_file = str(d / "proxy.pid")
c.JupyterHub.db_url = "sqlite:///" + str(d / "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = str(d / "cookie_secret")
c.JupyterHub.pid_file = str(d / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True

# No system users here: any name logs in; servers are never spawned by tests.
c.JupyterHub.authenticator_class = "dummy"

# The tests' token: a service in the admin role (full REST API access).
c.JupyterHub.services = [
    {"name": "fireops-test", "api_token": (d / "api-token").read_text().strip()},
]
c.JupyterHub.load_roles = [{"name": "admin", "services": ["fireops-test"]}]
EOF

hub_api_ok() { curl -fs -m 3 -o /dev/null "$HUB_API/"; }
hub_token_ok() { curl -fs -m 3 -o /dev/null -H "Authorization: token $HUB_TOKEN" "$HUB_API/users"; }
HUB_CMD="/usr/bin/python3 -m jupyterhub -f $HUB_DIR/jupyterhub_config.py"

if [ -n "$hub_config_changed" ] || ! hub_token_ok; then
	if alive "$HUB_DIR/hub.pid" "$HUB_CMD"; then
		stop "$HUB_DIR/hub.pid"
	fi
	# A hub that was killed leaves its proxy running on the hub's port.
	if alive "$HUB_DIR/proxy.pid" configurable-http-proxy; then
		stop "$HUB_DIR/proxy.pid"
	fi
	if port_open "$HUB_PORT"; then
		die "port $HUB_PORT is taken by something that is not this cache's hub (set FIREOPS_TEST_HUB_PORT)"
	fi
	log="$HUB_DIR/jupyterhub.log"
	# Debian's python, never a pyenv shim; a clean environment so nothing of
	# the caller's Python setup leaks in.
	(
		cd "$HUB_DIR"
		# shellcheck disable=SC2086
		env -i PATH="$SYS_PATH" HOME="$HUB_DIR" LANG=C.UTF-8 NODE_PATH="$NODE_PATH" \
			setsid $HUB_CMD </dev/null >>"$log" 2>&1 9>&- &
		echo $! >"$HUB_DIR/hub.pid"
	)
	wait_for 60 bash -c "kill -0 $(<"$HUB_DIR/hub.pid") 2>/dev/null && curl -fs -m 3 -o /dev/null $HUB_API/" || {
		show_log "$log"
		die "JupyterHub did not answer GET $HUB_API/ (log: $log)"
	}
	hub_token_ok || {
		show_log "$log"
		die "JupyterHub refuses the test token on GET $HUB_API/users (log: $log)"
	}
	say "started JupyterHub on 127.0.0.1:$HUB_PORT (pid $(<"$HUB_DIR/hub.pid"), NODE_PATH=$NODE_PATH)"
fi
hub_api_ok || die "JupyterHub at $HUB_API does not answer"
# The test hub runs the dummy authenticator (NativeAuthenticator is no
# Debian package). A real hub's NativeAuthenticator creates users_info in
# the hub's database at start, so the test hub gets it here too: a test that
# reads the users before any script signs one up would otherwise find no
# table on a fresh machine.
/usr/bin/python3 - "$HUB_DIR/jupyterhub.sqlite" "$ROOT/testdata/nativeauthenticator/users_info.sql" <<'PY' ||
import pathlib, sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=10)
with con:
    con.executescript(pathlib.Path(sys.argv[2]).read_text())
con.close()
PY
	die "could not create NativeAuthenticator's users_info table in $HUB_DIR/jupyterhub.sqlite"

# --- Monitoring ---------------------------------------------------------------

# TestLiveMonitoring runs these binaries itself (one set per case, on free
# loopback ports, clustering off), so nothing is started here and nothing
# slow is cached: the packages above install them; check that they run.
for bin in prometheus prometheus-alertmanager prometheus-node-exporter promtool amtool; do
	PATH=$SYS_PATH "$bin" --version >/dev/null 2>&1 ||
		die "$bin --version failed: reinstall its Debian package (apt-get install --reinstall prometheus prometheus-alertmanager prometheus-node-exporter)"
done

# --- settings for the tests --------------------------------------------------

mkdir -p "$ROOT/.cache"
if write_if_changed "$ROOT/.cache/testenv.sh" 600 <<EOF; then
# Generated by scripts/test-deps.sh; internal/testenv reads it, or: . .cache/testenv.sh
export FIREOPS_TEST_MONGO_URI='mongodb://127.0.0.1:$fdb_port/'
export FIREOPS_TEST_HUB_URL='$HUB_API'
export FIREOPS_TEST_HUB_TOKEN='$HUB_TOKEN'
export FIREOPS_TEST_HUB_DB='$HUB_DIR/jupyterhub.sqlite'
export DOCKER_HOST='$DOCKER_HOST'
EOF
	say "wrote .cache/testenv.sh"
fi

# Rendered by `fireops deploy` from the stack: section of fireops.yaml.
# Do not edit: change the config and run `fireops deploy` again.
import os
import pathlib
import sys

import nativeauthenticator

c = get_config()  # noqa: F821

DATA = pathlib.Path("/srv/jupyterhub/data")  # the jupyterhub-data volume
SECRETS = pathlib.Path("/run/secrets")


def secret(name):
    """Returns the secret `fireops deploy` generated into stack.dir/secrets/."""
    return (SECRETS / name).read_text().strip()


# The hub: behind its proxy on port 8000; user servers reach it by its
# service name on the jupyter network.
c.JupyterHub.bind_url = "http://:8000"
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_ip = "jupyterhub"

# User servers outlive the hub: a redeploy that recreates the hub (a new
# admin, a changed limit) leaves running containers alone, and the new hub
# finds them again through the state in its database.
c.JupyterHub.cleanup_servers = False

# State in the data volume: the database (with NativeAuthenticator's users)
# and the cookie secret, copied there once from the generated secret so that
# a restored volume keeps its sessions.
c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/data/jupyterhub.sqlite"
cookie_secret = DATA / "jupyterhub_cookie_secret"
if not cookie_secret.exists():
    old = os.umask(0o077)
    try:
        cookie_secret.write_text(secret("jupyterhub_cookie_secret") + "\n")
    finally:
        os.umask(old)
c.JupyterHub.cookie_secret_file = str(cookie_secret)

# Users: NativeAuthenticator (sign-up, then approval by an admin unless
# open_signup is on; `fireops users` administers them).
c.JupyterHub.authenticator_class = "native"
# NativeAuthenticator's pages: the "Authorize users" (/hub/authorize) and
# "Change password" links in the hub's menus come from its templates.
c.JupyterHub.template_paths = [f"{os.path.dirname(nativeauthenticator.__file__)}/templates/"]
c.NativeAuthenticator.open_signup = False
c.NativeAuthenticator.minimum_password_length = 10
c.NativeAuthenticator.check_common_password = True
c.Authenticator.admin_users = {"alice"}
c.Authenticator.allow_all = True  # NativeAuthenticator's approval decides who logs in

# User servers: one container per user from the notebook image, on the
# jupyter network, with the user's own volume.
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = "my-custom-jupyter-notebook:01858d672080"
c.DockerSpawner.network_name = "jupyter-network"
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.notebook_dir = "/home/jovyan/work"
c.DockerSpawner.volumes = {"jupyterhub-user-{username}": "/home/jovyan/work"}
# Stopped servers keep their container (started again on the next spawn,
# with the settings it was created with); the user's data is in the volume.
c.DockerSpawner.remove = False
c.DockerSpawner.pull_policy = "never"
c.DockerSpawner.cpu_limit = 4
c.DockerSpawner.mem_limit = "16G"
# /dev/shm for PyTorch DataLoader workers (Docker's default is 64 MB).
# The GPU policy at the end adds each server's device requests.
c.DockerSpawner.extra_host_config = {
    "shm_size": "2G",
}
# TensorFlow allocates GPU memory as it needs it instead of nearly all of
# it at start; PyTorch's caching allocator grows segments instead of
# fragmenting memory that other users' servers could use.
c.DockerSpawner.environment = {
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
}

# MongoDB: every approved user has a database and a MongoDB user of their
# own, with readWrite on that database alone (`fireops users approve`,
# docs/users.md). Their server gets that user's URI from the file fireops
# wrote into stack.dir/secrets/mongo-users (mounted read-only), never the
# root password. The URI's database is the user's: in Python,
# pymongo.MongoClient(os.environ["MONGODB_URI"]).get_default_database().
# A server container keeps the environment it was created with.
MONGO_USERS = pathlib.Path("/run/fireops/mongo-users")


def mongo_name(username):
    """The user's database and MongoDB user name (fireops: users.MongoName)."""
    import hashlib

    raw = username.encode()
    escaped = "".join(chr(b) if 97 <= b <= 122 or 48 <= b <= 57 else "-%02x" % b for b in raw)
    if len("user_" + escaped) <= 63:
        return "user_" + escaped
    return "user_" + escaped[:40] + "_" + hashlib.sha256(raw).hexdigest()[:16]


def mongo_uri(spawner):
    """MONGODB_URI of the user's server: their own URI, or "" before approval made it."""
    path = MONGO_USERS / mongo_name(spawner.user.name)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        spawner.log.warning(
            "%s has no MongoDB account (%s is missing): run `fireops users approve %s`",
            spawner.user.name, path, spawner.user.name,
        )
        return ""


c.DockerSpawner.environment.update(
    {
        "MONGODB_URI": mongo_uri,
        "MONGODB_DATABASE": lambda spawner: mongo_name(spawner.user.name),
    }
)

# Services: Prometheus reads /hub/metrics with its token; fireops administers
# users with its own; the idle culler stops idle servers.
c.JupyterHub.authenticate_prometheus = True
c.JupyterHub.services = [
    {"name": "prometheus", "api_token": secret("hub_prometheus_token")},
    {"name": "fireops", "api_token": secret("hub_fireops_token")},
]
c.JupyterHub.load_roles = [
    {"name": "prometheus", "scopes": ["read:metrics"], "services": ["prometheus"]},
    {
        "name": "fireops",
        "scopes": ["admin:users", "admin:servers", "list:users", "read:users", "read:metrics"],
        "services": ["fireops"],
    },
]
c.JupyterHub.services.append(
    {
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=3600"],
    }
)
c.JupyterHub.load_roles.append(
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
)

# GPUs (stack.hub.gpus; docs/deploy.md, "GPU sharing"). A user's grant is
# their users: entry, else the largest grant of their groups (the members
# listed here, or members of the hub group of that name), else the default.
# A number takes that many GPUs from the pool, those the fewest other
# running user servers hold (ties: the GPUs the user's stopped container
# had, then pool order); a list takes those GPUs; "all" every GPU. With
# profiles, the spawn page offers those that fit within the user's grant:
# a profile's list only to a user whose own list holds it, or to "all"
# (then exclusive still applies to it).
# A stopped container whose GPUs differ from the new assignment is removed
# before the start (Docker cannot change a container's devices; the user's
# volume stays).
import asyncio  # noqa: E402
import html  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

GPU_POLICY = {
    "pool": [],
    "default": {"count": 1},
    "exclusive": False,
    "users": {},
    "groups": {},
    "profiles": [],
}
GPU_ALL = -1
GPU_HOST = []  # the host's GPUs, listed once when the pool is empty
GPU_PENDING = {}  # container name -> (GPUs, time): assigned, not yet running
GPU_LOCK = asyncio.Lock()


class GPUPolicyError(Exception):
    """A start the GPU policy refuses; the hub shows the message to the user."""


def gpu_size(grant):
    """Number of GPUs a grant gives (all: more than any other)."""
    if "devices" in grant:
        return len(grant["devices"])
    return float("inf") if grant["count"] == GPU_ALL else grant["count"]


def gpu_groups(user):
    """The policy's groups the user is in: listed members or hub groups."""
    hub_groups = {g.name for g in user.groups}
    return sorted(
        name
        for name, group in GPU_POLICY["groups"].items()
        if user.name in group["members"] or name in hub_groups
    )


def gpu_grant(user):
    """The user's grant and the config key it comes from."""
    if user.name in GPU_POLICY["users"]:
        return GPU_POLICY["users"][user.name], f"stack.hub.gpus.users.{user.name}"
    best = None
    for name in gpu_groups(user):
        grant = GPU_POLICY["groups"][name]["gpus"]
        if best is None or gpu_size(grant) > gpu_size(best[0]):
            best = (grant, f"stack.hub.gpus.groups.{name}")
    return best or (GPU_POLICY["default"], "stack.hub.gpus.default")


def gpu_fits(wanted, grant):
    """Whether a profile's GPUs fit within a grant. A list fits only a list
    that holds it (or all): a number is GPUs from the pool, and a list
    could name any GPU, another user's own one included."""
    if gpu_size(wanted) == 0 or grant.get("count") == GPU_ALL:
        return True
    if "devices" in wanted:
        return "devices" in grant and set(wanted["devices"]) <= set(grant["devices"])
    return gpu_size(wanted) <= gpu_size(grant)


def gpu_profiles(user):
    """The profiles the user may choose, in config order."""
    grant, _ = gpu_grant(user)
    return [p for p in GPU_POLICY["profiles"] if gpu_fits(p["gpus"], grant)]


def gpu_options_form(spawner):
    """The spawn page's choice of GPU profile; none with fewer than two."""
    profiles = gpu_profiles(spawner.user)
    if len(profiles) < 2:
        return ""
    chosen = spawner.user_options.get("gpu_profile") or profiles[0]["name"]
    options = "\n".join(
        '<option value="{}"{}>{}</option>'.format(
            html.escape(p["name"]),
            " selected" if p["name"] == chosen else "",
            html.escape(p["description"] or p["name"]),
        )
        for p in profiles
    )
    return (
        '<label for="gpu_profile">GPUs</label>\n'
        '<select class="form-control" id="gpu_profile" name="gpu_profile" required autofocus>\n'
        f"{options}\n</select>"
    )


def gpu_options_from_form(formdata):
    """user_options from the spawn page: the chosen profile."""
    return {"gpu_profile": formdata.get("gpu_profile", [""])[0]}


def gpu_wanted(spawner):
    """What the server gets: (grant, the user's own GPUs (their list) or
    None, why) from the chosen profile or the user's grant. A count is taken
    from the user's own GPUs, else from the pool."""
    grant, key = gpu_grant(spawner.user)
    own = grant.get("devices")
    profiles = gpu_profiles(spawner.user)
    choice = spawner.user_options.get("gpu_profile")
    if choice:
        for p in profiles:
            if p["name"] == choice:
                return p["gpus"], own, f"profile {choice} within {key}"
        # A choice the grant no longer allows (the hub reuses the last
        # options when a start has none) or an API call's: the first
        # profile, never more than the grant.
        spawner.log.warning(
            "GPU profile %r is not one %s may choose (%s: %s); using the first",
            choice, spawner.user.name, key, ", ".join(p["name"] for p in profiles) or "none",
        )
    if profiles:
        p = profiles[0]
        return p["gpus"], own, f"profile {p['name']} (the first) within {key}"
    return grant, own, key


def gpu_parse_list(text):
    """The GPUs of `nvidia-smi -L`: indices, or the MIG instances of a GPU
    in MIG mode."""
    gpus = []
    for line in text.splitlines():
        m = re.match(r"GPU (\d+): ", line)
        if m:
            gpus.append([m.group(1)])
            continue
        m = re.match(r"\s+MIG .*\(UUID: (MIG-[^)\s]+)\)", line)
        if m and gpus:
            if gpus[-1][0].isdigit():
                gpus[-1] = []
            gpus[-1].append(m.group(1))
    return [g for gpu in gpus for g in gpu]


async def gpu_pool(spawner):
    """The pool: stack.hub.gpus.pool, or the host's GPUs."""
    if GPU_POLICY["pool"]:
        return list(GPU_POLICY["pool"])
    if not GPU_HOST:
        # The hub has no GPU: `nvidia-smi -L` in a throwaway container of
        # the notebook image, with every GPU, lists the host's.
        host_config = spawner.client.create_host_config(
            device_requests=[{"driver": "nvidia", "count": GPU_ALL, "capabilities": [["gpu"]]}],
            network_mode="none",
        )
        out = ""
        container = None
        try:
            container = await spawner.docker(
                "create_container",
                image=spawner.image,
                command=["nvidia-smi", "-L"],
                host_config=host_config,
                labels={"org.firetech.fireops": "gpu-list"},
            )
            await spawner.docker("start", container["Id"])
            status = await spawner.docker("wait", container["Id"], timeout=120)
            out = (await spawner.docker("logs", container["Id"])).decode(errors="replace")
            if status.get("StatusCode") != 0:
                raise RuntimeError(f"exit status {status.get('StatusCode')}: {out.strip()}")
        except Exception as e:
            raise GPUPolicyError(
                f"could not list the host's GPUs (nvidia-smi -L in {spawner.image}: {e}): "
                "set stack.hub.gpus.pool, or check the NVIDIA container toolkit with `fireops gpu check`"
            ) from e
        finally:
            if container:
                try:
                    await spawner.docker("remove_container", container["Id"], force=True)
                except Exception as e:
                    spawner.log.warning("removing the GPU list container: %s", e)
        gpus = gpu_parse_list(out)
        if not gpus:
            raise GPUPolicyError(f"nvidia-smi -L lists no GPU: {out.strip()!r}")
        GPU_HOST[:] = gpus
        spawner.log.info("GPU pool (the host's GPUs): %s", ", ".join(gpus))
    return list(GPU_HOST)


def gpu_held(container):
    """The GPUs a container was created with: [] none, None every GPU."""
    requests = (container.get("HostConfig") or {}).get("DeviceRequests") or []
    held = []
    for r in requests:
        if r.get("Count") == GPU_ALL:
            return None
        held.extend(r.get("DeviceIDs") or [])
    return held


async def gpu_load(spawner, pool):
    """How many other running user servers hold each GPU of the pool, with
    the assignments of servers still starting."""
    load = {gpu: 0 for gpu in pool}
    mine = spawner.container_name

    def count(held):
        for gpu in pool if held is None else held:
            if gpu in load:
                load[gpu] += 1

    running = set()
    for summary in await spawner.docker("containers", filters={"status": "running"}):
        name = (summary.get("Names") or ["/"])[0].lstrip("/")
        if name == mine or not name.startswith(spawner.prefix + "-"):
            continue
        running.add(name)
        count(gpu_held(await spawner.docker("inspect_container", summary["Id"])))
    now = time.monotonic()
    for name, (held, since) in list(GPU_PENDING.items()):
        if now - since > spawner.start_timeout + 60:
            del GPU_PENDING[name]
        elif name != mine and name not in running:
            count(held)
    return load


def gpu_check_free(gpus, load):
    """With exclusive: refuses GPUs another running (or starting) server
    holds."""
    busy = [g for g in gpus if load.get(g, 0) > 0]
    if busy:
        raise GPUPolicyError(
            f"GPU {', '.join(busy)} is held by another running server (stack.hub.gpus.exclusive): "
            "try again later, or choose another profile"
        )


def gpu_pick(count, candidates, load, had, exclusive):
    """count GPUs of candidates: least load first, then the ones the
    container had, then their order."""
    free = [g for g in candidates if not exclusive or load.get(g, 0) == 0]
    if len(free) < count:
        busy = len(candidates) - len(free)
        raise GPUPolicyError(
            f"only {len(free)} of {len(candidates)} GPUs are free ({busy} held by other running servers) "
            f"and you need {count}: try again later, or choose a profile with fewer GPUs"
        )
    order = {g: i for i, g in enumerate(candidates)}
    ranked = sorted(free, key=lambda g: (load.get(g, 0), g not in (had or []), order[g]))
    return sorted(ranked[:count], key=order.get)


async def gpu_pre_spawn_hook(spawner):
    """Assigns the server's GPUs (device requests) before DockerSpawner
    starts it."""
    grant, own, why = gpu_wanted(spawner)
    async with GPU_LOCK:
        existing = await spawner.get_object()
        had = gpu_held(existing) if existing else []
        if existing and existing["State"].get("Running"):
            # Already running (the hub lost track of it): DockerSpawner
            # reuses it as it is.
            spawner.log.info("GPUs for %s: %s (its running container)", spawner.user.name, gpu_text(had))
            return
        if "devices" in grant:
            gpus = list(grant["devices"])
            if own is None and GPU_POLICY["exclusive"]:
                # A profile's list chosen under "all" (gpu_fits): not the
                # admin's list for this user, so exclusive applies. A list
                # within the user's own is theirs, as the grant itself.
                gpu_check_free(gpus, await gpu_load(spawner, gpus))
        elif grant["count"] == GPU_ALL:
            gpus = None
        elif grant["count"] == 0:
            gpus = []
        else:
            candidates = own if own is not None else await gpu_pool(spawner)
            if grant["count"] > len(candidates):
                raise GPUPolicyError(
                    f"{grant['count']} GPUs wanted ({why}) but there are only {len(candidates)}: "
                    "lower the grant or list more GPUs in stack.hub.gpus.pool"
                )
            load = await gpu_load(spawner, candidates)
            exclusive = GPU_POLICY["exclusive"] and own is None
            gpus = gpu_pick(grant["count"], candidates, load, had, exclusive)
        if gpus is None:
            requests = [{"driver": "nvidia", "count": GPU_ALL, "capabilities": [["gpu"]]}]
        elif gpus:
            requests = [{"driver": "nvidia", "device_ids": gpus, "capabilities": [["gpu"]]}]
        else:
            requests = []
        host_config = dict(spawner.extra_host_config)
        host_config["device_requests"] = requests
        spawner.extra_host_config = host_config
        if existing and had != gpus:
            spawner.log.info(
                "GPUs of %s change from %s to %s: removing its stopped container",
                spawner.container_name, gpu_text(had), gpu_text(gpus),
            )
            await spawner.remove_object()
        GPU_PENDING[spawner.container_name] = (gpus, time.monotonic())
    spawner.log.info("GPUs for %s: %s (%s)", spawner.user.name, gpu_text(gpus), why)


def gpu_text(gpus):
    """GPUs for the log."""
    if gpus is None:
        return "all"
    return ", ".join(gpus) or "none"


c.DockerSpawner.options_form = gpu_options_form
c.DockerSpawner.options_from_form = gpu_options_from_form
c.Spawner.pre_spawn_hook = gpu_pre_spawn_hook

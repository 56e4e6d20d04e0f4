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
# The proxy serves HTTPS with stack.tls' certificate and key (copied into
# the stack's secrets by `fireops deploy`).
c.JupyterHub.bind_url = "https://:8000"
c.JupyterHub.ssl_cert = "/run/secrets/hub_tls_cert"
c.JupyterHub.ssl_key = "/run/secrets/hub_tls_key"
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
c.NativeAuthenticator.open_signup = True
c.NativeAuthenticator.minimum_password_length = 10
c.NativeAuthenticator.check_common_password = True
c.Authenticator.admin_users = {"alice", "bob"}
c.Authenticator.allow_all = True  # NativeAuthenticator's approval decides who logs in

# User servers: one container per user from the notebook image, on the
# jupyter network, with the user's own volume.
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = "my-custom-jupyter-notebook:902b983057ee"
c.DockerSpawner.network_name = "jupyter-network"
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.notebook_dir = "/home/jovyan/work"
c.DockerSpawner.volumes = {"jupyterhub-user-{username}": "/home/jovyan/work"}
# Stopped servers keep their container (started again on the next spawn,
# with the settings it was created with); the user's data is in the volume.
c.DockerSpawner.remove = False
c.DockerSpawner.pull_policy = "never"
c.DockerSpawner.cpu_limit = 2.5
c.DockerSpawner.mem_limit = "8G"
# /dev/shm for PyTorch DataLoader workers (Docker's default is 64 MB).
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

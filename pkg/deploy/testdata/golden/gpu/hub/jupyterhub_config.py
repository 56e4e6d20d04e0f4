# Rendered by `fireops deploy` from the stack: section of fireops.yaml.
# Do not edit: change the config and run `fireops deploy` again.
import os
import pathlib
import sys

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
c.NativeAuthenticator.open_signup = False
c.NativeAuthenticator.minimum_password_length = 10
c.NativeAuthenticator.check_common_password = True
c.Authenticator.admin_users = {"alice"}
c.Authenticator.allow_all = True  # NativeAuthenticator's approval decides who logs in

# User servers: one container per user from the notebook image, on the
# jupyter network, with the user's own volume.
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = "my-custom-jupyter-notebook:902b983057ee"
c.DockerSpawner.network_name = "jupyter-network"
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.notebook_dir = "/home/jovyan/work"
c.DockerSpawner.volumes = {"jupyterhub-user-{username}": "/home/jovyan/work"}
c.DockerSpawner.remove = True
c.DockerSpawner.pull_policy = "never"
c.DockerSpawner.cpu_limit = 4
c.DockerSpawner.mem_limit = "16G"
c.DockerSpawner.extra_host_config = {
    "device_requests": [
        {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]},
    ],
}

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

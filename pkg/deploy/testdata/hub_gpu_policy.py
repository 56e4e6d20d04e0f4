"""Runs the GPU policy of a rendered jupyterhub_config.py (pkg/deploy's
TestHubGPUPolicy) against a fake Docker Engine.

Usage: python3 hub_gpu_policy.py RENDERED_CONFIG

The whole rendered file is executed the way the hub does (get_config(),
traitlets' Config), with its two folders (/srv/jupyterhub/data,
/run/secrets) moved to a temp dir holding made-up secrets, and a stand-in
for NativeAuthenticator (not installable here). The spawner is JupyterHub's
own Spawner class (from Debian's jupyterhub) named DockerSpawner, with the
few DockerSpawner traits and methods the policy uses, so that
c.DockerSpawner.* and c.Spawner.* load through traitlets as in the hub.
The Engine is a fake that records containers and their device requests.
"""

import asyncio
import pathlib
import re
import sys
import tempfile
import types
import unittest

from jupyterhub.spawner import Spawner
from traitlets import Any, Dict, Unicode
from traitlets.config import Config

CONFIG = pathlib.Path(sys.argv.pop(1)).read_text()


def load_config():
    """Executes the rendered config; returns (Config, namespace)."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="hubgpu-"))
    (tmp / "data").mkdir()
    (tmp / "secrets").mkdir()
    for name in set(re.findall(r'secret\("([^"]+)"\)', CONFIG)):
        (tmp / "secrets" / name).write_text("made-up-secret\n")
    src = CONFIG.replace('pathlib.Path("/srv/jupyterhub/data")', f'pathlib.Path("{tmp}/data")')
    src = src.replace('pathlib.Path("/run/secrets")', f'pathlib.Path("{tmp}/secrets")')
    src = src.replace('pathlib.Path("/run/fireops/', f'pathlib.Path("{tmp}/fireops/')
    native = types.ModuleType("nativeauthenticator")
    native.__file__ = str(tmp / "nativeauthenticator" / "__init__.py")
    sys.modules["nativeauthenticator"] = native
    cfg = Config()
    ns = {"get_config": lambda: cfg, "__name__": "jupyterhub_config"}
    exec(compile(src, "jupyterhub_config.py", "exec"), ns)
    return cfg, ns


class FakeEngine:
    """Containers by name: {"Id", "Name", "Running", "DeviceRequests"}."""

    def __init__(self, nvidia_smi_l=""):
        self.containers = {}
        self.nvidia_smi_l = nvidia_smi_l
        self.runs = []  # commands of containers the policy ran
        self.removed = []

    def add(self, name, running, requests):
        self.containers[name] = {"Id": "id-" + name, "Name": name, "Running": running, "DeviceRequests": requests}

    def by_id(self, cid):
        for c in self.containers.values():
            if c["Id"] == cid or c["Name"] == cid:
                return c
        raise LookupError(cid)

    # The docker-py APIClient methods the policy and FakeSpawner call.
    def containers_(self, filters=None):
        assert filters == {"status": "running"}, filters
        return [{"Id": c["Id"], "Names": ["/" + c["Name"]]} for c in self.containers.values() if c["Running"]]

    def inspect_container(self, cid):
        c = self.by_id(cid)
        return {
            "Id": c["Id"],
            "State": {"Running": c["Running"]},
            "HostConfig": {"DeviceRequests": c["DeviceRequests"]},
        }

    def create_container(self, image, command, host_config, labels):
        assert host_config["network_mode"] == "none", host_config
        assert host_config["device_requests"][0]["count"] == -1, host_config
        self.runs.append(command)
        self.add("gpu-list", False, None)
        return {"Id": "id-gpu-list"}

    def start(self, cid):
        self.by_id(cid)["Running"] = True

    def wait(self, cid, timeout):
        self.by_id(cid)["Running"] = False
        return {"StatusCode": 0 if self.nvidia_smi_l else 9}

    def logs(self, cid):
        return (self.nvidia_smi_l or "NVIDIA-SMI has failed").encode()

    def remove_container(self, cid, force=False, v=False):
        c = self.by_id(cid)
        self.removed.append(c["Name"])
        del self.containers[c["Name"]]


class FakeClient:
    def create_host_config(self, **kwargs):
        return dict(kwargs)


def docker_requests(requests):
    """Device requests as the Engine reports them."""
    out = []
    for r in requests:
        out.append({
            "Driver": r["driver"],
            "Count": r.get("count", 0),
            "DeviceIDs": r.get("device_ids"),
            "Capabilities": r["capabilities"],
        })
    return out


def make_spawner_class():
    class DockerSpawner(Spawner):
        """JupyterHub's Spawner with the DockerSpawner parts the policy uses."""

        extra_host_config = Dict(config=True)
        environment = Dict(config=True)
        image = Unicode("my-custom-jupyter-notebook:test", config=True)
        prefix = Unicode("jupyter", config=True)
        # DockerSpawner's other traits the rendered config sets.
        network_name = Unicode(config=True)
        pull_policy = Unicode(config=True)
        use_internal_ip = Any(config=True)
        volumes = Dict(config=True)
        remove = Any(config=True)
        cpu_limit = Any(config=True)
        mem_limit = Any(config=True)
        engine = Any()

        @property
        def container_name(self):
            return f"{self.prefix}-{self.user.name}"

        @property
        def client(self):
            return FakeClient()

        async def docker(self, method, *args, **kwargs):
            if method == "containers":
                method = "containers_"
            return getattr(self.engine, method)(*args, **kwargs)

        async def get_object(self):
            try:
                return self.engine.inspect_container(self.container_name)
            except LookupError:
                return None

        async def remove_object(self):
            self.engine.remove_container(self.container_name, v=True)

        async def start(self):
            """DockerSpawner's start: reuse the container, or create one
            with extra_host_config's device requests."""
            if self.container_name not in self.engine.containers:
                requests = docker_requests(self.extra_host_config.get("device_requests", []))
                self.engine.add(self.container_name, False, requests)
            self.engine.containers[self.container_name]["Running"] = True

        async def stop(self, now=False):
            self.engine.containers[self.container_name]["Running"] = False

        async def poll(self):
            c = self.engine.containers.get(self.container_name)
            return None if c and c["Running"] else 0

    return DockerSpawner


class User:
    def __init__(self, name, groups=()):
        self.name = name
        self.groups = [types.SimpleNamespace(name=g) for g in groups]


class PolicyTest(unittest.TestCase):
    def setUp(self):
        self.cfg, self.ns = load_config()
        self.cls = make_spawner_class()
        self.engine = FakeEngine()

    def policy(self, **kw):
        p = {"pool": [], "default": {"count": 1}, "exclusive": False, "users": {}, "groups": {}, "profiles": []}
        p.update(kw)
        self.ns["GPU_POLICY"] = p
        self.ns["GPU_HOST"][:] = []
        self.ns["GPU_PENDING"].clear()

    def spawner(self, name, groups=(), options=None):
        sp = self.cls(config=self.cfg, user=User(name, groups), engine=self.engine)
        if options is not None:
            sp.user_options = options
        return sp

    def spawn(self, name, groups=(), options=None):
        """Runs the hook and the start; returns the GPUs the container got
        ("all", or a list) and the spawner."""
        sp = self.spawner(name, groups, options)
        asyncio.run(sp.run_pre_spawn_hook())
        asyncio.run(sp.start())
        return held(self.engine.containers[sp.container_name]["DeviceRequests"]), sp

    def gpus(self, name, groups=(), options=None):
        return self.spawn(name, groups, options)[0]

    def refused(self, name, groups=(), options=None):
        sp = self.spawner(name, groups, options)
        with self.assertRaises(self.ns["GPUPolicyError"]) as cm:
            asyncio.run(sp.run_pre_spawn_hook())
        return str(cm.exception)


def held(requests):
    ids = []
    for r in requests or []:
        if r["Count"] == -1:
            return "all"
        ids.extend(r["DeviceIDs"] or [])
    return ids


class TestConfigLoads(PolicyTest):
    def test_hooks_set(self):
        sp = self.spawner("ada")
        self.assertIs(sp.pre_spawn_hook, self.ns["gpu_pre_spawn_hook"])
        self.assertIs(sp.options_form, self.ns["gpu_options_form"])
        self.assertIs(sp.options_from_form, self.ns["gpu_options_from_form"])
        # shm_size stays in extra_host_config; the policy adds the devices.
        self.assertIn("shm_size", sp.extra_host_config)
        self.assertNotIn("device_requests", sp.extra_host_config)

    def test_rendered_policy(self):
        # testdata/configs/gpu-shared.yaml
        p = self.ns["GPU_POLICY"]
        self.assertEqual(p["pool"], ["0", "1", "MIG-4f4b5a4e-1c2d-5e6f-8a9b-0c1d2e3f4a5b", "MIG-9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4"])
        self.assertEqual(p["default"], {"count": 1})
        self.assertTrue(p["exclusive"])
        self.assertEqual(p["users"], {"alice": {"devices": ["2"]}, "bob": {"count": -1}})
        self.assertEqual(p["groups"], {"rl": {"members": ["carol"], "gpus": {"count": 2}}})
        self.assertEqual([(x["name"], x["gpus"]) for x in p["profiles"]],
                         [("cpu", {"count": 0}), ("one-gpu", {"count": 1}), ("two-gpus", {"count": 2})])


class TestGrants(PolicyTest):
    def test_host_pool_least_loaded(self):
        """An empty pool is the host's GPUs, listed once with nvidia-smi -L
        (a GPU in MIG mode by its MIG instances); each start takes the GPU
        the fewest running servers hold."""
        self.policy()
        self.engine.nvidia_smi_l = (
            "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-2222-3333-4444-555555555555)\n"
            "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-66666666-7777-8888-9999-000000000000)\n"
            "  MIG 3g.20gb     Device  0: (UUID: MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)\n"
            "  MIG 3g.20gb     Device  1: (UUID: MIG-ffffffff-1111-2222-3333-444444444444)\n"
        )
        got = [self.gpus(u) for u in ("ada", "ben", "cy", "dee")]
        self.assertEqual(got, [["0"], ["MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"],
                               ["MIG-ffffffff-1111-2222-3333-444444444444"], ["0"]])
        self.assertEqual(self.engine.runs, [["nvidia-smi", "-L"]], "the GPUs are listed once")
        self.assertNotIn("gpu-list", self.engine.containers, "the listing container is removed")

    def test_host_pool_unlisted(self):
        self.policy()
        msg = self.refused("ada")
        self.assertIn("could not list the host's GPUs", msg)
        self.assertIn("stack.hub.gpus.pool", msg)

    def test_grant_order(self):
        """users: entry, then the largest group grant (listed members or a
        hub group), then the default."""
        self.policy(
            pool=["0", "1", "2", "3"],
            default={"count": 0},
            users={"alice": {"devices": ["3"]}, "bob": {"count": -1}},
            groups={
                "rl": {"members": ["carol", "alice"], "gpus": {"count": 2}},
                "big": {"members": [], "gpus": {"count": 3}},
            },
        )
        # Each on an Engine of its own, nothing pending: no other server
        # holds a GPU.
        for user, groups, want in (
            ("alice", [], ["3"]),
            ("bob", [], "all"),
            ("carol", [], ["0", "1"]),
            ("dave", ["big", "other"], ["0", "1", "2"]),
            ("carol2", ["rl", "big"], ["0", "1", "2"]),
            ("eve", [], []),
        ):
            self.engine = FakeEngine()
            self.ns["GPU_PENDING"].clear()
            self.assertEqual(self.gpus(user, groups), want, user)

    def test_least_loaded_counts_all(self):
        """A running server with every GPU loads each; one with a list,
        those; servers of other prefixes and stopped ones count not."""
        self.policy(pool=["0", "1", "2"])
        self.engine.add("jupyter-old", True, [{"Driver": "nvidia", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]]}])
        self.engine.add("jupyter-x", True, [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0", "2"], "Capabilities": [["gpu"]]}])
        self.engine.add("jupyter-stopped", False, [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["1"], "Capabilities": [["gpu"]]}])
        self.engine.add("firetech-gpu-exporter-1", True, [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["1"], "Capabilities": [["gpu"]]}])
        self.assertEqual(self.gpus("ada"), ["1"])

    def test_pending_start_counts(self):
        """Two starts before either container exists get different GPUs."""
        self.policy(pool=["0", "1"])
        a, b = self.spawner("ada"), self.spawner("ben")

        async def both():
            await a.run_pre_spawn_hook()
            await b.run_pre_spawn_hook()

        asyncio.run(both())
        self.assertEqual(a.extra_host_config["device_requests"][0]["device_ids"], ["0"])
        self.assertEqual(b.extra_host_config["device_requests"][0]["device_ids"], ["1"])

    def test_exclusive(self):
        self.policy(pool=["0", "1"], exclusive=True, users={"root": {"devices": ["0"]}})
        self.assertEqual(self.gpus("ada"), ["0"])
        self.assertEqual(self.gpus("ben"), ["1"])
        msg = self.refused("cy")
        self.assertIn("only 0 of 2 GPUs are free", msg)
        # A listed grant is the admin's choice: exclusive does not apply.
        self.assertEqual(self.gpus("root"), ["0"])

    def test_count_over_pool(self):
        self.policy(pool=["0"], default={"count": 2})
        self.assertIn("2 GPUs wanted", self.refused("ada"))

    def test_per_spawner_host_config(self):
        """Each server's devices are its own: the configured dict is not
        changed."""
        self.policy(pool=["0", "1"])
        _, a = self.spawn("ada")
        _, b = self.spawn("ben")
        self.assertNotEqual(a.extra_host_config["device_requests"], b.extra_host_config["device_requests"])
        self.assertNotIn("device_requests", self.spawner("cy").extra_host_config)


class TestContainers(PolicyTest):
    def test_stopped_container_recreated_when_gpus_change(self):
        """A container from before the policy (every GPU) is removed when
        stopped, so that the new one gets its assigned GPU."""
        self.policy(pool=["0", "1"])
        self.engine.add("jupyter-ada", False, [{"Driver": "nvidia", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]]}])
        self.assertEqual(self.gpus("ada"), ["0"])
        self.assertEqual(self.engine.removed, ["jupyter-ada"])

    def test_stopped_container_kept(self):
        """A stopped container keeps its GPU when it is among the least
        loaded: nothing is removed."""
        self.policy(pool=["0", "1"])
        self.engine.add("jupyter-ada", False, [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["1"], "Capabilities": [["gpu"]]}])
        self.assertEqual(self.gpus("ada"), ["1"])
        self.assertEqual(self.engine.removed, [])

    def test_running_container_left_alone(self):
        """A running container is reused as it is, and its GPUs are not
        assigned again to a later start."""
        self.policy(pool=["0", "1"], default={"count": 0})
        self.engine.add("jupyter-ada", True, [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["1"], "Capabilities": [["gpu"]]}])
        self.assertEqual(self.gpus("ada"), ["1"])
        self.assertEqual(self.engine.removed, [])
        self.assertNotIn("jupyter-ada", self.ns["GPU_PENDING"])


class TestProfiles(PolicyTest):
    def setUp(self):
        super().setUp()
        self.policy(
            pool=["0", "1", "2"],
            default={"count": 1},
            users={"alice": {"devices": ["1", "2"]}, "zed": {"count": 0}, "bob": {"count": -1}},
            groups={"rl": {"members": ["carol"], "gpus": {"count": 2}}},
            profiles=[
                {"name": "cpu", "description": "CPU only", "gpus": {"count": 0}},
                {"name": "one", "description": "One GPU <fast>", "gpus": {"count": 1}},
                {"name": "two", "description": "", "gpus": {"count": 2}},
                {"name": "gpu2", "description": "GPU 2", "gpus": {"devices": ["2"]}},
            ],
        )

    def form(self, name, options=None):
        sp = self.spawner(name, options=options)
        return asyncio.run(sp.get_options_form())

    def test_form_offers_profiles_within_the_grant(self):
        """A number fits a larger number or list; a list fits only a user
        whose own list holds it, or all (never a number: the list could
        name anyone's GPU)."""
        form = self.form("ada")
        self.assertEqual(re.findall(r'<option value="([^"]+)"', form), ["cpu", "one"])
        self.assertIn("One GPU &lt;fast&gt;", form)
        self.assertIn('<option value="cpu" selected>', form)
        self.assertEqual(re.findall(r'<option value="([^"]+)"', self.form("carol")), ["cpu", "one", "two"])
        self.assertEqual(re.findall(r'<option value="([^"]+)"', self.form("alice")), ["cpu", "one", "two", "gpu2"])
        self.assertEqual(re.findall(r'<option value="([^"]+)"', self.form("bob")), ["cpu", "one", "two", "gpu2"])
        # One profile fits: no form.
        self.assertEqual(self.form("zed"), "")
        # The previous choice is preselected.
        self.assertIn('<option value="one" selected>', self.form("ada", {"gpu_profile": "one"}))

    def test_choice(self):
        sp = self.spawner("ada")
        opts = sp.options_from_form({"gpu_profile": ["one"]})
        self.assertEqual(opts, {"gpu_profile": "one"})
        self.assertEqual(self.gpus("ada", options=opts), ["0"])
        self.assertEqual(self.gpus("ben", options={"gpu_profile": "cpu"}), [])
        self.assertEqual(self.gpus("carol", options={"gpu_profile": "two"}), ["1", "2"])
        self.assertEqual(self.gpus("alice", options={"gpu_profile": "gpu2"}), ["2"])
        self.assertEqual(self.gpus("bob", options={"gpu_profile": "gpu2"}), ["2"], "shared: not exclusive")

    def test_no_choice_is_the_first(self):
        self.assertEqual(self.gpus("ada"), [])
        self.assertEqual(self.gpus("zed"), [])

    def test_count_within_own_gpus(self):
        """A count profile of a user with a list takes from their GPUs."""
        self.engine.add("jupyter-x", True, [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["1"], "Capabilities": [["gpu"]]}])
        self.assertEqual(self.gpus("alice", options={"gpu_profile": "one"}), ["2"])

    def test_profile_beyond_the_grant(self):
        """A profile the grant does not allow (a stale choice the hub
        reuses, an API call's) gives the first profile, with a warning."""
        with self.assertLogs(level="WARNING") as logs:
            self.assertEqual(self.gpus("ada", options={"gpu_profile": "two"}), [])
        self.assertIn("'two' is not one ada may choose (stack.hub.gpus.default: cpu, one)", logs.output[0])
        self.assertEqual(self.gpus("ben", options={"gpu_profile": "unknown"}), [])


class TestListProfiles(PolicyTest):
    """A profile that lists GPUs stays within the grant, the pool and
    exclusive: a number never gets a listed GPU (another user's own one,
    or one a running server holds)."""

    def setUp(self):
        super().setUp()
        self.policy(
            pool=["0", "1"],
            default={"count": 1},
            exclusive=True,
            users={"alice": {"devices": ["3"]}, "bob": {"count": -1}},
            profiles=[
                {"name": "cpu", "description": "", "gpus": {"count": 0}},
                {"name": "one", "description": "", "gpus": {"count": 1}},
                {"name": "alice-gpu", "description": "", "gpus": {"devices": ["3"]}},
                {"name": "gpu0", "description": "", "gpus": {"devices": ["0"]}},
            ],
        )

    def offered(self, name):
        form = asyncio.run(self.spawner(name).get_options_form())
        return re.findall(r'<option value="([^"]+)"', form)

    def test_form(self):
        self.assertEqual(self.offered("ada"), ["cpu", "one"])
        self.assertEqual(self.offered("alice"), ["cpu", "one", "alice-gpu"])
        self.assertEqual(self.offered("bob"), ["cpu", "one", "alice-gpu", "gpu0"])

    def test_private_gpu_outside_pool(self):
        """The spawn page's choice and the REST API's user_options alike."""
        with self.assertLogs(level="WARNING") as logs:
            self.assertEqual(self.gpus("ada", options={"gpu_profile": "alice-gpu"}), [])
        self.assertIn("'alice-gpu' is not one ada may choose (stack.hub.gpus.default: cpu, one)", logs.output[0])
        self.assertEqual(self.gpus("alice", options={"gpu_profile": "alice-gpu"}), ["3"])

    def test_exclusive_not_bypassed(self):
        self.assertEqual(self.gpus("ben", options={"gpu_profile": "one"}), ["0"])
        with self.assertLogs(level="WARNING"):
            self.assertEqual(self.gpus("ada", options={"gpu_profile": "gpu0"}), [])
        self.assertEqual(self.gpus("cy", options={"gpu_profile": "one"}), ["1"])

    def test_all_grant_list_profile_exclusive(self):
        """all may choose a list, and exclusive still applies to it: GPU 0
        held by a running server (or one starting) refuses the start."""
        self.assertEqual(self.gpus("ben", options={"gpu_profile": "one"}), ["0"])
        msg = self.refused("bob", options={"gpu_profile": "gpu0"})
        self.assertIn("GPU 0 is held by another running server", msg)
        self.assertIn("exclusive", msg)
        # Free again once ben's server stops.
        self.engine.containers["jupyter-ben"]["Running"] = False
        self.ns["GPU_PENDING"].clear()
        self.assertEqual(self.gpus("bob", options={"gpu_profile": "gpu0"}), ["0"])
        # And then a number does not get GPU 0.
        self.assertEqual(self.gpus("cy", options={"gpu_profile": "one"}), ["1"])
        self.assertIn("only 0 of 2 GPUs are free", self.refused("dee", options={"gpu_profile": "one"}))

    def test_all_grant_list_profile_pending(self):
        """A start in flight holds its listed GPU for exclusive."""
        a, b = self.spawner("ben", options={"gpu_profile": "one"}), self.spawner("bob", options={"gpu_profile": "gpu0"})
        asyncio.run(a.run_pre_spawn_hook())
        with self.assertRaises(self.ns["GPUPolicyError"]):
            asyncio.run(b.run_pre_spawn_hook())

    def test_own_list_not_refused(self):
        """A list within the user's own is the admin's choice: exclusive
        does not refuse it (as for the grant itself)."""
        self.engine.add("jupyter-x", True, [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["3"], "Capabilities": [["gpu"]]}])
        self.assertEqual(self.gpus("alice", options={"gpu_profile": "alice-gpu"}), ["3"])


if __name__ == "__main__":
    unittest.main(verbosity=2)

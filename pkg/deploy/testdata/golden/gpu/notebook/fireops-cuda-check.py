#!/usr/bin/env python3
"""fireops' CUDA check of the notebook image (docs/deploy.md, "GPU sharing").

Rendered by `fireops deploy` beside the notebook image's Dockerfile, which
copies it to /opt/fireops/cuda-check.py and runs it during the build.

It fails (exit status 1) when PyTorch or TensorFlow is not a CUDA build,
when a CUDA library of the image (the nvidia-* wheels) cannot be loaded, or
when the CUDA runtime or cuDNN of the image is older than the one a
framework was built for. An image build has no GPU: libcuda.so.1 (the
driver) comes from the host when a server starts with GPUs, so a library
that lacks only the driver passes then. With a GPU (in a user's server:
`python /opt/fireops/cuda-check.py --torch --tensorflow --require-gpu`) it
also runs a small operation on every GPU with each framework.

Usage: cuda-check.py [--torch] [--tensorflow] [--require-gpu] [--site DIR]...
"""

import argparse
import ctypes
import glob
import importlib.metadata
import os
import re
import site
import sys

DRIVER = "libcuda.so.1"


class Check:
    """Collects the results and prints each one."""

    def __init__(self):
        self.failed = 0

    def ok(self, msg):
        print(f"fireops-cuda-check: ok: {msg}", flush=True)

    def fail(self, msg):
        self.failed += 1
        print(f"fireops-cuda-check: FAIL: {msg}", flush=True)


def gpu_count():
    """The number of GPUs the CUDA driver sees; 0 without the driver."""
    try:
        cuda = ctypes.CDLL(DRIVER)
    except OSError:
        return 0
    if cuda.cuInit(0) != 0:
        return 0
    n = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(n)) != 0:
        return 0
    return n.value


def site_dirs():
    """The folders pip installs into."""
    dirs = list(site.getsitepackages())
    user = site.getusersitepackages()
    if isinstance(user, str):
        dirs.append(user)
    return [d for d in dirs if os.path.isdir(d)]


def cuda_libraries(dirs):
    """The shared libraries of the CUDA wheels: <site>/nvidia/*/lib/*.so*."""
    libs = []
    for d in dirs:
        libs += sorted(glob.glob(os.path.join(d, "nvidia", "*", "lib", "*.so*")))
    return libs


def load_libraries(libs):
    """Loads every library (RTLD_GLOBAL, so that one loaded satisfies
    another's dependency on it), again and again while some load. Returns
    {path: error} of those that never loaded."""
    pending = list(libs)
    errors = {}
    while pending:
        loaded = False
        for path in list(pending):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                errors[path] = str(e)
                continue
            pending.remove(path)
            errors.pop(path, None)
            loaded = True
        if not loaded:
            break
    return errors


def check_libraries(chk, dirs, gpus, frameworks):
    libs = cuda_libraries(dirs)
    if not libs:
        if frameworks:
            chk.fail(
                "no CUDA libraries (nvidia-* wheels) in " + ", ".join(dirs)
                + ": install the CUDA build of the frameworks (tensorflow[and-cuda], torch from PyPI)"
            )
        return
    errors = load_libraries(libs)
    driver_only = {p: e for p, e in errors.items() if DRIVER in e}
    broken = {p: e for p, e in errors.items() if DRIVER not in e}
    for path, err in sorted(broken.items()):
        chk.fail(f"cannot load {path}: {err}")
    if driver_only and gpus:
        for path, err in sorted(driver_only.items()):
            chk.fail(f"cannot load {path} with the driver present: {err}")
    loaded = len(libs) - len(errors)
    if not broken:
        note = ""
        if driver_only and not gpus:
            note = f"; {len(driver_only)} need the driver ({DRIVER}), which a server with GPUs gets from the host"
        chk.ok(f"{loaded} of {len(libs)} CUDA libraries load{note}")


def version_tuple(v):
    """The leading numbers of a version: "12.5.82" -> (12, 5, 82)."""
    nums = re.findall(r"\d+", str(v or "").split("+")[0])
    return tuple(int(n) for n in nums)


def installed(prefix):
    """The version of the installed distribution whose name starts with
    prefix (nvidia-cuda-runtime-cu12 and the like), or None."""
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(prefix):
            return dist.version
    return None


def check_versions(chk, framework, cuda, cudnn):
    """The image's CUDA runtime and cuDNN must be the framework's major
    version and at least its minor version (each refuses an older one at
    run time, on a GPU only)."""
    for what, built, prefix in (("CUDA runtime", cuda, "nvidia-cuda-runtime"), ("cuDNN", cudnn, "nvidia-cudnn")):
        have = installed(prefix)
        b, h = version_tuple(built), version_tuple(have)
        if not b or not h:
            continue
        n = min(len(b), 2)
        if h[0] != b[0] or h[:n] < b[:n]:
            chk.fail(f"{framework} was built for {what} {built} but the image has {have}")
        else:
            chk.ok(f"{framework}: {what} {have} serves its {built}")


def check_torch(chk, gpus):
    try:
        import torch
    except Exception as e:  # an ImportError, or an OSError of a CUDA library
        chk.fail(f"import torch: {e}")
        return
    if not torch.version.cuda:
        chk.fail(f"torch {torch.__version__} is a CPU-only build: install a CUDA build")
        return
    chk.ok(f"torch {torch.__version__} built for CUDA {torch.version.cuda}")
    try:
        # Loads cuDNN and refuses one older than torch was built for.
        cudnn = torch.backends.cudnn.version()
    except Exception as e:
        chk.fail(f"torch cannot use the image's cuDNN: {e}")
    else:
        if cudnn is None:
            chk.fail("torch finds no cuDNN")
        else:
            chk.ok(f"torch loads cuDNN {cudnn}")
    check_versions(chk, "torch", torch.version.cuda, None)
    if not gpus:
        return
    if not torch.cuda.is_available() or torch.cuda.device_count() != gpus:
        chk.fail(f"torch sees {torch.cuda.device_count()} GPUs, the driver {gpus}")
        return
    for i in range(gpus):
        try:
            x = torch.ones((256, 256), device=f"cuda:{i}")
            total = float((x @ x).sum().item())
            if total != 256.0**3:
                raise RuntimeError(f"a matrix product gave {total}")
        except Exception as e:
            chk.fail(f"torch on cuda:{i}: {e}")
        else:
            chk.ok(f"torch runs on cuda:{i} ({torch.cuda.get_device_name(i)})")


def check_tensorflow(chk, gpus):
    try:
        import tensorflow as tf
    except Exception as e:
        chk.fail(f"import tensorflow: {e}")
        return
    info = tf.sysconfig.get_build_info()
    if not info.get("is_cuda_build"):
        chk.fail(f"tensorflow {tf.__version__} is not a CUDA build")
        return
    chk.ok(f"tensorflow {tf.__version__} built for CUDA {info.get('cuda_version')}, cuDNN {info.get('cudnn_version')}")
    check_versions(chk, "tensorflow", info.get("cuda_version"), info.get("cudnn_version"))
    if not gpus:
        return
    devices = tf.config.list_physical_devices("GPU")
    if len(devices) != gpus:
        chk.fail(f"tensorflow sees {len(devices)} GPUs, the driver {gpus} (its log above names the library it could not load)")
        return
    for i in range(gpus):
        try:
            with tf.device(f"/GPU:{i}"):
                x = tf.ones((256, 256))
                total = float(tf.reduce_sum(tf.matmul(x, x)).numpy())
            if total != 256.0**3:
                raise RuntimeError(f"a matrix product gave {total}")
        except Exception as e:
            chk.fail(f"tensorflow on GPU:{i}: {e}")
        else:
            chk.ok(f"tensorflow runs on GPU:{i}")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torch", action="store_true", help="check PyTorch")
    ap.add_argument("--tensorflow", action="store_true", help="check TensorFlow")
    ap.add_argument("--require-gpu", action="store_true", help="fail without a GPU")
    ap.add_argument("--site", action="append", help="where the CUDA wheels are (default: site-packages)")
    args = ap.parse_args(argv)
    chk = Check()
    gpus = gpu_count()
    if gpus:
        chk.ok(f"the driver sees {gpus} GPUs")
    elif args.require_gpu:
        chk.fail(f"no GPU: {DRIVER} does not load or sees none (start the server with GPUs)")
    else:
        chk.ok("no GPU (an image build): checking that the CUDA libraries load")
    frameworks = args.torch or args.tensorflow
    # The libraries first, so that a framework's import below finds them
    # loaded and a missing one is named here.
    check_libraries(chk, args.site or site_dirs(), gpus, frameworks)
    if args.torch:
        check_torch(chk, gpus)
    if args.tensorflow:
        check_tensorflow(chk, gpus)
    if chk.failed:
        print(f"fireops-cuda-check: {chk.failed} failed", flush=True)
        return 1
    print("fireops-cuda-check: passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

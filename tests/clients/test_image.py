"""The container image (scripts/build-image.sh, docs/container.md): built here from the test binary with buildah,
from scratch and without pulling, into a temporary storage root; its root filesystem mounted (containers cannot
run in this sandbox) and the server started in it with chroot, as the image's user and with the image's own
environment, entrypoint and command. Checks the declared layout, health, an ONNX upload and an inference that
matches ONNX Runtime's Python API, a clean stop on SIGTERM, and that nothing is left behind."""
import json
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time

import numpy as np
import pytest

from conftest import BINARY, ROOT, Server, fixture_path
from models import inputs_for, reference

SCRIPT = os.path.join(ROOT, "scripts", "build-image.sh")
DATA_DIR = "/var/lib/yunmo"
USER = "65532:65532"


# Runs in a private mount namespace (unshare), so its mounts vanish when the server exits: the image's root read-only
# with its declared volumes and /tmp writable on top, and a /proc, as `docker run --read-only --tmpfs /tmp -v ...`
# gives; then chroot runs the image's entrypoint and command as the image's user.
CONTAINER_LIKE = """
root=$1 user=$2 volumes=$3 image_path=$4; shift 4
chroot=$(command -v chroot)
mount --bind "$root" "$root"
for dir in $volumes /tmp; do mount --bind "$root$dir" "$root$dir"; done
mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
export PATH="$image_path"
exec "$chroot" --userspec="$user" "$root" "$@"
"""


class ImageServer(Server):
    """The server in the image's root filesystem, with only the image's environment plus `extra_env`."""

    def __init__(self, mount_point, image_config, log_path, extra_env):
        self.data_dir = None
        self.key = None
        self.ssl_context = None
        ready_in_image = "/tmp/ready.json"
        ready = mount_point + ready_in_image
        env = dict(variable.split("=", 1) for variable in image_config.get("Env", []))
        env.update(extra_env)
        # The host's PATH finds unshare, mount and chroot; the server gets the image's back.
        env["PATH"], image_path = "/usr/sbin:/usr/bin:/sbin:/bin", env["PATH"]
        command = [shutil.which("unshare"), "--mount", "--propagation", "private", "sh", "-euc", CONTAINER_LIKE, "container-like",
                   mount_point, image_config["User"], " ".join(image_config.get("Volumes", {})), image_path,
                   *image_config["Entrypoint"], *image_config["Cmd"],
                   "--http-port", "0", "--grpc-port", "0", "--ready-file", ready_in_image]
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log, env=env, cwd="/")
        deadline = time.time() + 60
        while not os.path.exists(ready):
            problem = None
            if self.process.poll() is not None:
                problem = f"exited with {self.process.returncode}"
            elif time.time() > deadline:
                problem = "did not become ready in 60 s"
            if problem:
                # Killed here, or the mount point stays busy and the storage root cannot be removed.
                self.process.kill()
                self.process.wait()
                self.log.close()
                raise RuntimeError(f"yunmo in the image {problem}: {read_tail(log_path)}")
            time.sleep(0.05)
        with open(ready) as f:
            self.addresses = json.load(f)
        # The image binds 0.0.0.0 (YUNMO__SERVER__HOST); the chroot shares this machine's network.
        port = self.addresses["http"].rsplit(":", 1)[1]
        self.address = f"127.0.0.1:{port}"
        self.url = f"http://{self.address}"


def dockerfile_runtime_config():
    """What the Dockerfile's last stage declares, in the shape of an OCI image config (the instructions the
    image built here must match; labels and the working directory aside)."""
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    config = {"Env": {}, "ExposedPorts": set()}
    for line in lines[last_from + 1:]:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ENV":
            config["Env"].update(pair.split("=", 1) for pair in shlex.split(rest))
        elif instruction == "EXPOSE":
            config["ExposedPorts"].update(port if "/" in port else f"{port}/tcp" for port in rest.split())
        elif instruction == "USER":
            config["User"] = rest.strip()
        elif instruction in ("ENTRYPOINT", "CMD", "VOLUME"):
            config[instruction.capitalize()] = json.loads(rest)
    return config


def read_tail(path, size=4000):
    with open(path, "rb") as f:
        return f.read()[-size:].decode(errors="replace")


def buildah(storage, *arguments):
    """Runs a buildah command on the test's storage root; returns its standard output."""
    done = subprocess.run(["buildah", "--root", storage["root"], "--runroot", storage["runroot"], "--storage-driver", "vfs", *arguments],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"buildah {' '.join(arguments)} failed: {done.stderr}"
    return done.stdout.strip()


@pytest.fixture()
def storage():
    """A temporary buildah storage root, with its image and containers removed through buildah, then deleted."""
    if shutil.which("buildah") is None:
        pytest.fail("buildah is not installed: run scripts/system-deps.sh")
    if os.geteuid() != 0:
        pytest.fail("the image test needs root (buildah's vfs storage, buildah mount, chroot)")
    work = tempfile.mkdtemp(prefix="yunmo-image-")
    paths = {"work": work, "root": os.path.join(work, "storage"), "runroot": os.path.join(work, "run")}
    yield paths
    try:
        if os.path.isdir(paths["root"]):
            for container in buildah(paths, "containers", "--quiet").split():
                buildah(paths, "umount", container)
                buildah(paths, "rm", container)
            for image in buildah(paths, "images", "--quiet").split():
                buildah(paths, "rmi", "--force", image)
            assert buildah(paths, "images", "--quiet") == "", "an image was left in the test's storage root"
    finally:
        shutil.rmtree(work)
    assert not os.path.exists(work)


def test_image_built_from_scratch_serves_an_onnx_model_as_its_user(storage):
    started = time.time()
    name = "localhost/yunmo-test:image"
    archive = os.path.join(storage["work"], "yunmo.oci.tar")
    built = subprocess.run([SCRIPT, "--binary", BINARY, "--name", name, "--root", storage["root"], "--runroot", storage["runroot"],
                            "--oci-archive", archive], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, f"scripts/build-image.sh failed:\n{built.stderr}"
    image_id = built.stdout.strip().splitlines()[-1]
    build_seconds = time.time() - started

    # What the image declares: the Dockerfile's entrypoint, user, ports, volume and environment.
    image = json.loads(buildah(storage, "inspect", "--type", "image", name))
    config = image["OCIv1"]["config"]
    assert config["Entrypoint"] == ["/usr/local/bin/yunmo"] and config["Cmd"] == ["serve"]
    assert config["User"] == USER
    assert set(config["ExposedPorts"]) == {"8080/tcp", "8081/tcp"}
    assert set(config["Volumes"]) == {DATA_DIR}
    env = dict(variable.split("=", 1) for variable in config["Env"])
    assert env["YUNMO__SERVER__HOST"] == "0.0.0.0" and env["YUNMO__STORAGE__DATA_DIR"] == DATA_DIR
    assert env["ORT_DYLIB_PATH"].startswith("/usr/local/lib/libonnxruntime.so")
    assert config["Labels"]["org.opencontainers.image.title"] == "yunmo"
    # The Dockerfile's runtime stage declares the same (PATH and SSL_CERT_FILE come from its base image, distroless).
    declared = dockerfile_runtime_config()
    assert declared["Env"] == {key: value for key, value in env.items() if key not in ("PATH", "SSL_CERT_FILE")}
    assert (declared["User"], declared["Entrypoint"], declared["Cmd"]) == (config["User"], config["Entrypoint"], config["Cmd"])
    assert declared["ExposedPorts"] == set(config["ExposedPorts"]) and declared["Volume"] == list(config["Volumes"])
    assert buildah(storage, "images", "--quiet", "--no-trunc", name).removeprefix("sha256:") == image_id.removeprefix("sha256:")

    # The OCI archive holds the same image under its name.
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [name]

    container = buildah(storage, "from", "--pull=never", name)
    mount_point = buildah(storage, "mount", container)
    binary = os.path.join(mount_point, "usr/local/bin/yunmo")
    sections = subprocess.run(["readelf", "-S", "--wide", binary], capture_output=True, text=True, check=True).stdout
    assert ".symtab" not in sections and ".debug_info" not in sections, "the image's binary is not stripped"
    assert os.stat(os.path.join(mount_point, "tmp")).st_mode & 0o7777 == 0o1777
    data_stat = os.stat(mount_point + DATA_DIR)
    assert (data_stat.st_uid, data_stat.st_gid) == (65532, 65532)
    with open(os.path.join(mount_point, "etc/passwd")) as f:
        assert any(line.split(":")[2:4] == ["65532", "65532"] for line in f)
    assert os.path.getsize(os.path.join(mount_point, "etc/ssl/certs/ca-certificates.crt")) > 0
    assert os.path.isfile(mount_point + env["ORT_DYLIB_PATH"])

    log_path = os.path.join(storage["work"], "server.log")
    server = ImageServer(mount_point, config, log_path, {"YUNMO__AUTH__ENABLED": "false"})
    try:
        assert server.addresses["http"].startswith("0.0.0.0:"), server.addresses
        status, body = server.request("GET", "/v2/health/ready")
        assert status == 200, body

        server.push("iris", "iris_mlp.onnx")
        x = inputs_for("iris_mlp")["X"]
        expected = reference(fixture_path("iris_mlp.onnx"), {"X": x})
        status, body = server.request("POST", "/v2/models/iris/infer",
                                      {"inputs": [{"name": "X", "shape": list(x.shape), "datatype": "FP32", "data": x.flatten().tolist()}]})
        assert status == 200, body
        outputs = {output["name"]: output for output in json.loads(body)["outputs"]}
        assert set(expected) <= set(outputs), outputs
        np.testing.assert_array_equal(np.asarray(outputs["label"]["data"]).reshape(outputs["label"]["shape"]), expected["label"])
        probabilities = np.asarray(outputs["probabilities"]["data"], np.float32).reshape(outputs["probabilities"]["shape"])
        np.testing.assert_allclose(probabilities, expected["probabilities"], rtol=1e-5, atol=1e-5)

        # The model went to the image's data volume, written by the image's user.
        stored = os.listdir(mount_point + DATA_DIR)
        assert "yunmo.db" in stored and "artifacts" in stored, stored
        assert os.stat(os.path.join(mount_point + DATA_DIR, "yunmo.db")).st_uid == 65532
    finally:
        try:
            code = server.stop() if server.process.poll() is None else server.process.returncode
        except subprocess.TimeoutExpired:
            server.process.kill()  # or it keeps the mount point busy
            server.process.wait()
            code = "a timeout"
        server.log.close()
    assert code == 0, f"yunmo in the image exited with {code} on SIGTERM: {read_tail(log_path)}"
    with open(log_path, errors="replace") as f:
        log = f.read()
    # ONNX Runtime came from the path the image declares.
    assert "ONNX Runtime loaded" in log and env["ORT_DYLIB_PATH"] in log, log[-4000:]
    print(f"image built in {build_seconds:.1f} s, whole test {time.time() - started:.1f} s")

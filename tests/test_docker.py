"""The Dockerfile without a Docker engine: its install steps replayed in a fresh virtualenv.

The builder's RUN builds the wheels, the runtime's RUN installs them into a new venv, and the
image's ENTRYPOINT + CMD (with the image's ENV) is started against the example config, exactly
as written, with the container's absolute paths mapped into a temporary directory. Hadolint
(in .ci/run) checks the rest.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from authproxy.config.schema import Config

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# Paths inside the image, longest first; mapped below a temporary directory.
IMAGE_PATHS = ("/opt/authproxy", "/etc/authproxy", "/var/lib", "/wheels", "/src")


@dataclass
class Instruction:
    keyword: str
    args: str

    def json_list(self) -> list[str]:
        """ENTRYPOINT/CMD/HEALTHCHECK CMD in exec form."""
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} must use the exec (JSON) form"
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    steps: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [s for s in self.steps if s.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        (step,) = self.all(keyword)
        return step


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments dropped, ARGs substituted."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest.strip())
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None))
        else:
            stages[-1].steps.append(Instruction(keyword, rest))
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    """The stage's ENV instructions (`KEY=value` pairs), in order."""
    env: dict[str, str] = {}
    for step in stage.all("ENV"):
        for pair in shlex.split(step.args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


class ImageRoot:
    """Maps the image's absolute paths into a temporary directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._pattern = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, IMAGE_PATHS)) + r")(?=/|\b|$)")

    def path(self, image_path: str) -> Path:
        return self.base / image_path.lstrip("/")

    def map(self, text: str) -> str:
        return self._pattern.sub(lambda m: str(self.path(m.group(1))), text)


def strip_run_flags(args: str) -> str:
    """`RUN --mount=... cmd` -> `cmd` (the mounted wheel directory is the mapped path here)."""
    while args.startswith("--"):
        args = args.split(None, 1)[1]
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: str, cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(["sh", "-ec", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_dockerfile_shape(stages: list[Stage]) -> None:
    build, final = stages[0], stages[-1]
    assert len(stages) == 2 and build.name and final.base.endswith("-slim") and build.base.endswith("-slim")
    final_text = " ".join(s.args for s in final.steps)
    assert not re.search(r"apt-get|apk |gcc|g\+\+|build-essential|python3-dev", final_text), "no compilers at runtime"
    assert "/wheels" not in " ".join(s.args for s in final.all("COPY")), "wheels are mounted, not copied in"
    user = final.one("USER").args.split(":")[0]
    assert user not in ("root", "0"), "runs as a non-root user"
    assert final.steps.index(final.one("USER")) > max(final.steps.index(s) for s in final.all("RUN"))
    assert "authproxy.server.healthcheck" in final.one("HEALTHCHECK").args  # probes /-/health, as the config says
    assert json.loads(final.one("VOLUME").args) == ["/var/lib/authproxy"]
    assert final.one("EXPOSE").args == "8080"
    assert env_of(final)["AUTHPROXY_LISTEN"] == "0.0.0.0:8080"
    assert "/etc/authproxy/config.yaml" in final.one("CMD").json_list()
    assert any(s.args.split() == ["config.example.yaml", "/etc/authproxy/config.yaml"] for s in final.all("COPY"))


def test_dockerignore_lets_exactly_the_copied_files_in(stages: list[Stage]) -> None:
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "a whitelist: secrets, .venv and .git never reach the build context"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = {
        src.rstrip("/")
        for stage in stages
        for step in stage.all("COPY")
        if not step.args.startswith("--from")
        for src in step.args.split()[:-1]
    }
    assert copied == allowed


def test_install_steps_and_entrypoint_in_a_fresh_venv(stages: list[Stage], tmp_path: Path) -> None:
    root = ImageRoot(tmp_path / "image")
    build, final = stages
    tools = Path(sys.executable).parent  # the `python` the base image would provide
    host_env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "AUTHPROXY"))}
    host_env["PATH"] = f"{tools}{os.pathsep}{host_env.get('PATH', '')}"

    # builder: WORKDIR, COPY from the repository, RUN (build the wheels)
    workdir = root.path("/")
    for step in build.steps:
        if step.keyword == "WORKDIR":
            workdir = root.path(step.args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif step.keyword == "COPY":
            *sources, dest = step.args.split()
            target = workdir / dest
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target / src.name)
        elif step.keyword == "RUN":
            run(root.map(strip_run_flags(step.args)), workdir, {**host_env, **env_of(build)})
    assert list(root.path("/wheels").glob("authproxy-*.whl")), "the builder stage builds the authproxy wheel"

    # runtime: the install RUN into a fresh venv; user/permission steps need root and a real image
    image_env = {k: root.map(v.replace("$PATH", host_env["PATH"])) for k, v in env_of(final).items()}
    for step in final.all("RUN"):
        command = strip_run_flags(step.args)
        if "pip install" in command:
            run(root.map(command), tmp_path, {**host_env, **image_env})
        else:
            assert command.startswith(("useradd", "mkdir", "chown", "chmod")), command
    for step in final.all("COPY"):
        source, dest = step.args.split()
        root.path(dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / source, root.path(dest))
    venv_python = root.path("/opt/authproxy/bin/python")
    assert venv_python.exists()
    probe = subprocess.run(
        [str(venv_python), "-c", "import authproxy, sys; print(authproxy.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert str(root.path("/opt/authproxy")) in probe.stdout, "installed from the wheel, not the checkout"

    # the entrypoint as the container runs it: ENV (listen on a free port instead of 8080)
    port = free_port()
    state = root.path("/var/lib/authproxy")
    state.mkdir(parents=True)
    env = {**host_env, **image_env, "AUTHPROXY_LISTEN": f"127.0.0.1:{port}"}
    env["PATH"] = image_env["PATH"]
    command = [root.map(a) for a in final.one("ENTRYPOINT").json_list() + final.one("CMD").json_list()]
    proc = subprocess.Popen(command, cwd=state, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, proc.kill)  # a hung entrypoint fails the test instead of hanging it
    watchdog.start()
    try:
        events = []
        assert proc.stderr is not None
        for line in proc.stderr:
            events.append(line)
            if '"listening"' in line:
                break
        else:
            pytest.fail("the entrypoint exited before listening:\n" + "".join(events))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/health", timeout=5) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as err:  # no provider credentials set: not ready
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5)
        assert err.value.code == 503
        healthcheck = final.one("HEALTHCHECK").args.split("CMD", 1)[1].strip()
        probe_command = [root.map(a) for a in json.loads(healthcheck)]
        subprocess.run(probe_command, env=env, check=True, timeout=10, cwd=state)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err_text = proc.communicate(timeout=30)
        watchdog.cancel()
    assert proc.returncode == 0, err_text
    assert '"stopped"' in err_text


def test_compose_sidecar_wiring() -> None:
    """What a linter cannot see: mounted files exist, the app waits for a healthy proxy, nothing is published."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if source.startswith(".") and source != "./config.yaml":  # the user's copy of the example
                assert (ROOT / source).exists(), f"{name}: {source}"
    proxy, app = services["authproxy"], services["app"]
    assert proxy["build"] == "." and "ports" not in proxy and proxy["read_only"] is True
    assert app["depends_on"]["authproxy"]["condition"] == "service_healthy"
    assert "authproxy.server.healthcheck" in " ".join(proxy["healthcheck"]["test"])
    assert app["environment"]["AUTHPROXY_URL"] == "http://authproxy:8080"
    env_file = proxy["env_file"][0]["path"]
    assert (ROOT / f"{env_file}.example").exists()
    assert Path(env_file).name in (ROOT / "deploy" / ".gitignore").read_text(), "never committed"
    assert services["redis"]["profiles"] == ["redis"]


def compose_healthcheck() -> list[str]:
    test = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["authproxy"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return test[1:]


def test_compose_mounts_the_users_config_drains_and_probes_as_the_image_does(stages: list[Stage]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    proxy = yaml.safe_load(text)["services"]["authproxy"]
    (config_mount,) = [v for v in proxy["volumes"] if isinstance(v, dict)]
    assert config_mount == {
        "type": "bind",
        "source": "./config.yaml",
        "target": "/etc/authproxy/config.yaml",
        "read_only": True,
        "bind": {"create_host_path": False},  # a missing ./config.yaml is an error, not an empty directory
    }
    assert "cp config.example.yaml config.yaml" in text
    readme = (ROOT / "README.md").read_text().split("### Docker Compose sidecar", 1)[1].split("\n## ", 1)[0]
    assert readme.index("cp config.example.yaml config.yaml") < readme.index("docker compose up")
    grace = proxy["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > Config().shutdown_timeout + 5
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert float(grace[:-1]) > float(example.get("shutdown_timeout", Config().shutdown_timeout))
    image_probe = json.loads(stages[-1].one("HEALTHCHECK").args.split("CMD", 1)[1])
    assert compose_healthcheck() == image_probe
    assert "required:" in text and "Compose 2.24 or later" in text and "Compose 2.24 or later" in readme


@pytest.mark.parametrize("where", ["plain", "tls", "admin-listener"])
def test_the_healthcheck_finds_the_port_tls_and_admin_listener(tmp_path: Path, where: str) -> None:
    """The compose/image probe against a real `authproxy run`, then with nothing listening."""
    from tests.fakes.certs import ScratchCA

    port, admin_port = free_port(), free_port()
    text = f"listen: 127.0.0.1:{port}\nroutes:\n  api:\n    upstream: https://api.example.com\n"
    if where == "tls":
        issued = ScratchCA(tmp_path).issue("proxy")
        text += f"tls: {{cert_file: {issued.cert}, key_file: {issued.key}}}\n"
    if where == "admin-listener":
        text += f"admin: {{listen: '127.0.0.1:{admin_port}'}}\n"
    config = tmp_path / "config.yaml"
    config.write_text(text)
    probe = [sys.executable if a == "python" else a for a in compose_healthcheck()]
    probe = [str(config) if a == "/etc/authproxy/config.yaml" else a for a in probe]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHPROXY")}
    command = [sys.executable, "-m", "authproxy", "run", "-c", str(config), "--log-format", "json"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if '"listening"' in line:
                break
        else:
            pytest.fail("the proxy exited before listening")
        done = subprocess.run(probe, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
        assert (done.returncode, done.stderr) == (0, "")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        watchdog.cancel()
    done = subprocess.run(probe, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    scheme = "https" if where == "tls" else "http"
    shown = admin_port if where == "admin-listener" else port
    assert done.returncode == 1
    assert done.stderr.startswith(f"unhealthy: {scheme}://127.0.0.1:{shown}/-/health: "), done.stderr

"""Docker for the tests: the engine, the locally made base images, the project's image, containers.

The engine must be running (``.ci/run`` starts ``dockerd`` when it is not); a test that needs it
fails with a one-line reason otherwise. Images are built once per test session and reuse the
engine's layer cache, so a second session rebuilds only what changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from realenv import REPO_ROOT

# Debian's docker.io client (20.10) runs BuildKit itself; a newer client would need the buildx
# plugin for it. DOCKER overrides.
DOCKER = os.environ.get("DOCKER") or ("/usr/bin/docker" if Path("/usr/bin/docker").exists()
                                      else shutil.which("docker") or "docker")
IMAGE = "desktop-runner:test"
DEBIAN_IMAGE = "desktop-runner/debian:bookworm-minbase"  # made by docker/build-base.sh
IMAGE_UID = 10001
MAX_IMAGE_MB = 500
BASE_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 1800


def ca_bundle() -> Path | None:
    """The host's CA bundle (it trusts this network's TLS proxy, if any), for builds only."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def docker(*args: str, timeout: float = 60, check: bool = True, input: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the docker client; on failure (with ``check``) an AssertionError with its output."""
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout,
                          input=input, env={**os.environ, **(env or {})})
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} ... failed ({done.returncode}): "
                             f"{done.stderr.strip()[-3000:]}")
    return done


def require_engine() -> None:
    try:
        done = subprocess.run([DOCKER, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        problem = str(exc)
    else:
        if done.returncode == 0:
            return
        problem = done.stderr.strip()[-500:]
    pytest.fail("a running Docker engine is required for this test (install docker.io: "
                f"scripts/setup.sh; start dockerd as root: .ci/run does): {problem}", pytrace=False)


def build_base() -> None:
    """docker/build-base.sh: the base images, made locally when they cannot be pulled (cached)."""
    done = subprocess.run([str(REPO_ROOT / "docker" / "build-base.sh")], capture_output=True, text=True,
                          timeout=BASE_TIMEOUT_S, env={**os.environ, "DOCKER": DOCKER})
    print(done.stdout)
    if done.returncode != 0:
        pytest.fail(f"docker/build-base.sh failed ({done.returncode}): {done.stderr.strip()[-3000:]}",
                    pytrace=False)


def build_image() -> float:
    """The repository's Dockerfile, built as README "Docker" says; seconds it took."""
    args = ["build", "--network", "host", "-t", IMAGE]
    bundle = ca_bundle()
    if bundle is not None:
        args += ["--secret", f"id=ca-bundle,src={bundle}"]
    started = time.monotonic()
    done = subprocess.run([DOCKER, *args, str(REPO_ROOT)], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    took = time.monotonic() - started
    if done.returncode != 0:
        pytest.fail(f"docker build failed ({done.returncode}): {done.stderr.strip()[-4000:]}", pytrace=False)
    # The image this replaced, now untagged, would otherwise pile up run after run (CI's engine
    # keeps its images); only this project's untagged images are removed.
    docker("image", "prune", "-f", "--filter", "label=org.opencontainers.image.title=desktop-runner", timeout=120)
    return took


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The project's image, built from the repository's Dockerfile on the (local) base."""
    require_engine()
    started = time.monotonic()
    build_base()
    base_s = time.monotonic() - started
    build_s = build_image()
    print(f"base images: {base_s:.1f} s; docker build: {build_s:.1f} s")
    return IMAGE


@pytest.fixture(scope="session")
def debian_image() -> str:
    """A plain Debian 12 (debootstrap minbase), the fresh host of the host-install test."""
    require_engine()
    build_base()
    return DEBIAN_IMAGE


class Container:
    """``docker run -d`` with the given arguments; removed (forcibly) by ``remove()``."""

    def __init__(self, args: list[str], image: str, command: list[str] | None = None) -> None:
        self.id = docker("run", "-d", *args, image, *(command or [])).stdout.strip()

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.id).stdout)[0]

    @property
    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def logs(self) -> str:
        done = docker("logs", self.id, check=False)
        return done.stdout + done.stderr

    def events(self) -> Iterator[dict]:
        """Every JSON line the container logged (the runner's and the entrypoint's)."""
        for line in self.logs().splitlines():
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue

    def wait_for_event(self, event: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.events():
                if record.get("event") == event:
                    return record
            if not self.running:
                break
            time.sleep(0.2)
        raise AssertionError(f"container never logged {event!r} within {timeout:.0f} s; "
                             f"log tail:\n{self.logs()[-4000:]}")

    def wait_for_health(self, status: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.inspect()["State"].get("Health", {}).get("Status")
            if seen == status:
                return
            time.sleep(0.25)
        raise AssertionError(f"health stayed {seen!r}, never {status!r} within {timeout:.0f} s")

    def exec(self, *command: str, timeout: float = 30, input: str | None = None) -> str:
        return docker("exec", "-i", self.id, *command, timeout=timeout, input=input).stdout

    def process_uids(self) -> dict[int, int]:
        """PID (host's view) -> real UID of the container's main process and all its descendants."""
        pending = [int(self.inspect()["State"]["Pid"])]
        uids: dict[int, int] = {}
        while pending:
            pid = pending.pop()
            status = Path(f"/proc/{pid}/status").read_text()
            uids[pid] = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        return uids

    def stop(self, timeout_s: int = 10) -> float:
        """``docker stop``: SIGTERM, SIGKILL after ``timeout_s``; seconds it took."""
        started = time.monotonic()
        docker("stop", "-t", str(timeout_s), self.id, timeout=timeout_s + 30)
        return time.monotonic() - started

    def remove(self) -> None:
        docker("rm", "-f", self.id, check=False)

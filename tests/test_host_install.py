"""The README's host install, run verbatim on a fresh Debian 12.

The commands are read from the README's code block marked ``<!-- host-install -->`` (so the
README cannot drift from what is tested) and run as root in a new container of the locally made
Debian 12 minbase image (docker/build-base.sh), the only substitution being the repository's
address: a clone of this checkout's committed HEAD, mounted read-only. Then ``desktop-runner
check`` runs as the service user against the session's LiveKit server on loopback and an Xvfb
on this machine, and every part must pass, the display with mss's default backend.

The "host" has what a Debian 12 host has before the README starts: sudo, and (on this network)
pip told about the CA bundle of the TLS proxy in /etc/pip.conf, as this machine's pip is.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from dockerenv import ca_bundle, debian_image, docker  # noqa: F401 (fixture)
from realenv import REPO_ROOT, LiveKitServer, Xvfb

pytestmark = pytest.mark.integration

MARKER = "<!-- host-install -->"
REPOSITORY_PLACEHOLDER = "<this repository>"
INSTALL_TIMEOUT_S = 1200
PASSPHRASE = "host install passphrase"


def readme_host_install() -> str:
    """The shell block that follows the marker in README.md."""
    text = (REPO_ROOT / "README.md").read_text()
    assert text.count(MARKER) == 1, f"README.md must hold exactly one {MARKER} block"
    m = re.search(re.escape(MARKER) + r"\n```sh\n(.*?)\n```", text, re.S)
    assert m, f"no ```sh block right after {MARKER} in README.md"
    return m.group(1)


def test_readme_host_install_block_is_what_the_service_unit_expects() -> None:
    block = readme_host_install()
    assert block.count(REPOSITORY_PLACEHOLDER) == 1
    unit = (REPO_ROOT / "systemd" / "desktop-runner.service").read_text()
    # The unit runs /opt/desktop-runner/.venv/bin/desktop-runner as user desktop-runner.
    assert "ExecStart=/opt/desktop-runner/.venv/bin/desktop-runner\n" in unit
    assert "User=desktop-runner\n" in unit
    assert " /opt/desktop-runner && cd /opt/desktop-runner\n" in block
    assert "python3 -m venv .venv" in block and ".venv/bin/pip install ." in block
    assert "useradd --system --home /var/lib/desktop-runner --create-home desktop-runner" in block


def test_readme_host_install_works_verbatim_on_fresh_debian_12(
        debian_image: str, livekit_server: LiveKitServer, xvfb: Xvfb, tmp_path: Path) -> None:  # noqa: F811
    clone = tmp_path / "desktop-runner"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True, timeout=120)
    install = readme_host_install().replace(REPOSITORY_PLACEHOLDER, "/src/desktop-runner")
    host_setup = ("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                  "--no-install-recommends sudo >/dev/null")
    mounts = ["-v", f"{clone}:/src/desktop-runner:ro", "-v", "/tmp/.X11-unix:/tmp/.X11-unix:ro"]
    bundle = ca_bundle()
    if bundle is not None:
        mounts += ["-v", f"{bundle}:/etc/ssl/host-ca-bundle.crt:ro"]
        host_setup += " && printf '[global]\\ncert = /etc/ssl/host-ca-bundle.crt\\n' > /etc/pip.conf"
    check = ("cd / && sudo -u desktop-runner env "
             f"DISPLAY={xvfb.display} RUNNER_LIVEKIT__URL={livekit_server.url} "
             f"RUNNER_LIVEKIT__API_KEY={livekit_server.api_key} "
             f"RUNNER_LIVEKIT__API_SECRET={livekit_server.api_secret} "
             f"RUNNER_E2EE__PASSPHRASE='{PASSPHRASE}' /opt/desktop-runner/.venv/bin/desktop-runner check")
    script = (f"set -e\n{host_setup}\necho '=== README host install ==='\nset -x\n{install}\nset +x\n"
              f"echo '=== check ==='\n{check}\n")
    done = docker("run", "--rm", "--network", "host", *mounts, debian_image, "bash", "-c", script,
                  timeout=INSTALL_TIMEOUT_S, check=False)
    output = done.stdout + done.stderr
    print(output[-8000:])
    assert done.returncode == 0, f"host install or check failed ({done.returncode}):\n{output[-4000:]}"
    lines = output.split("=== check ===\n", 1)[1].splitlines()
    results = [line for line in lines if line.startswith(("PASS ", "FAIL "))]
    assert [r.split(":")[0] for r in results] == [
        "PASS configuration", "PASS display", "PASS encoder", "PASS e2ee", "PASS livekit"], results
    assert "(default backend)" in results[1], results[1]
    assert "evdev" in output, "pip built evdev on the host (the reason for the compiler)"

"""The runner needs no writable file system: it runs, publishes and stops cleanly with every
mount read-only, as under the system unit's ProtectSystem=strict.

The runner runs in a private mount namespace (``unshare --mount``) in which every mount except
/dev and /proc is remounted read-only, /tmp and this checkout included; /proc is a fresh
``subset=pid,hidepid=invisible`` instance (ProcSubset=pid, ProtectProc=invisible), and the
process has no capabilities and no_new_privs (CapabilityBoundingSet=, NoNewPrivileges=). It
stays root without capabilities because this machine's Python lives under /root (mode 0700).
The X socket in /tmp/.X11-unix stays connectable: connect() needs no write access to the mount.
Its stderr goes to a log file opened outside the namespace, as the journal would take it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from realenv import LiveKitServer, Runner, Xvfb

if TYPE_CHECKING:
    from typing import Any

pytestmark = pytest.mark.integration

RUN_S = 3.0
PROBE_FAILED = 97  # the namespace turned out writable: the test proves nothing

# Runs as ``sh -c SANDBOX sandbox ARGV...`` inside ``unshare --mount``; execs ARGV at the end.
SANDBOX = r"""
set -e
for target in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
    case "$target" in
        /dev|/dev/*|/proc|/proc/*) ;;
        *) mount -o remount,bind,ro "$target" ;;
    esac
done
mount -t proc -o subset=pid,hidepid=invisible proc /proc
for probe in /.ro-probe /tmp/.ro-probe "$PWD/.ro-probe" "$HOME/.ro-probe"; do
    if ( : > "$probe" ) 2>/dev/null; then
        echo "read-only sandbox: $probe is writable" >&2
        exit 97
    fi
done
exec setpriv --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
"""


class ReadOnlyRootRunner(Runner):
    """``python -m runner`` as devstack starts it, inside the read-only namespace."""

    def _spawn(self, argv: list[str], **kwargs: Any):  # type: ignore[no-untyped-def]
        sandbox = [shutil.which("unshare") or "unshare", "--mount", "--propagation", "private", "--",
                   "sh", "-c", SANDBOX, "sandbox"]
        # Let Python try to write .pyc files (and fail): the runner must not depend on them.
        env = {k: v for k, v in kwargs.pop("env").items() if k != "PYTHONDONTWRITEBYTECODE"}
        return super()._spawn([*sandbox, *argv], env=env, **kwargs)


def test_runs_with_a_read_only_root(livekit_server: LiveKitServer, xvfb: Xvfb, room_name: str,
                                    tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (a mount namespace with remounts); run the suite as root",
                    pytrace=False)
    for tool in ("unshare", "setpriv"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required for this test (Debian package util-linux)", pytrace=False)
    home = tmp_path / "home"  # HOME and TMPDIR: must still be empty afterwards
    home.mkdir()
    runner = ReadOnlyRootRunner.joining(
        livekit_server, room=room_name, passphrase="read only", display=xvfb.display,
        extra_env={"HOME": str(home), "TMPDIR": str(home), "RUNNER_LOG__STATUS_INTERVAL_S": "1"},
    )
    with runner:
        runner.wait_for_event("track_published", timeout=30)
        time.sleep(RUN_S)
        assert runner.returncode is None, "the runner exited on a read-only root"
        runner.stop()
    log = runner.log_path.read_text(errors="replace")
    statuses = [e for e in runner.events() if e.get("event") == "status"]
    assert runner.returncode == 0, log[-2000:]
    assert any(e["fps"] > 0 for e in statuses), statuses
    assert [e["event"] for e in runner.events()][-1] == "stopped"
    assert "Read-only file system" not in log
    assert list(home.iterdir()) == []

"""The test harness's real components keep their files where pytest prunes them."""

from __future__ import annotations

import pytest

from realenv import LiveKitServer, Xvfb


def test_components_log_under_this_runs_pytest_directory(
        livekit_server: LiveKitServer, xvfb: Xvfb, tmp_path_factory: pytest.TempPathFactory) -> None:
    parent = tmp_path_factory.getbasetemp() / "devstack"
    for component in (livekit_server, xvfb):
        assert component.log_path.parent.parent == parent, component.log_path
        assert component.log_path.parent.name.startswith(f"devstack-{component.name}-")
        assert component.log_path.is_file()

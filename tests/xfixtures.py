"""X-side fixtures shared by the control tests, for a test module with a ``screen`` fixture (an
Xvfb) that loads them: ``pytest_plugins = ["xfixtures"]``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack import Xvfb
from xrecorder import XRecorder
from xstate import XState


@pytest.fixture
def xs(screen: Xvfb) -> Iterator[XState]:
    """Pointer, buttons and keys read back from the X server."""
    state = XState(screen.display)
    yield state
    state.close()


@pytest.fixture
def recorder(screen: Xvfb) -> Iterator[XRecorder]:
    """A focused window recording what X delivers (scripts/xrecorder.py), ready."""
    with XRecorder(screen.display) as rec:
        rec.wait_ready()
        yield rec

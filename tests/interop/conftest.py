"""Fixtures for the E2EE interop suite: livekit-client's real worker in Node, and real media.

``js`` is a freshly loaded livekit-client E2EE worker (one Node process per session, see
e2ee_worker_host.mjs and worker_host.py); the media fixtures are encoded once per session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import media
from .worker_host import SENDER, WorkerHost


@pytest.fixture(scope="session")
def worker_host() -> Iterator[WorkerHost]:
    host = WorkerHost()
    yield host
    host.close()


@pytest.fixture
def js(worker_host: WorkerHost) -> WorkerHost:
    """A fresh worker with ExternalE2EEKeyProvider's options, SENDER's encryption enabled."""
    worker_host.reset()
    worker_host.enable(SENDER)
    return worker_host


@pytest.fixture(scope="session")
def x264_units() -> list[tuple[bytes, bool]]:
    return media.x264_units()


@pytest.fixture(scope="session")
def x265_units() -> list[tuple[bytes, bool]]:
    return media.x265_units()


@pytest.fixture(scope="session")
def vp8_frames() -> list[tuple[bytes, bool]]:
    return media.vp8_frames()


@pytest.fixture(scope="session")
def vp9_frames() -> list[tuple[bytes, bool]]:
    return media.vp9_frames()


@pytest.fixture(scope="session")
def opus_packets() -> list[bytes]:
    return media.opus_packets()

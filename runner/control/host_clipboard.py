"""The host clipboard as the protocol offers it: ``dr.clipboard.get``/``set`` and the ``clipboard``
push to the controller, allowed by ``clipboard.mode``. The X11 side is runner/control/clipboard.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from runner.config import ClipboardSettings
from runner.control.messages import MAX_CLIPBOARD_BYTES
from runner.control.policy import Refused
from runner.logs import get_logger

log = get_logger(__name__)


class Clipboard(Protocol):
    def get_text(self) -> str | None: ...
    def set_text(self, text: str) -> None: ...
    def close(self) -> None: ...


ClipboardFactory = Callable[[str, Callable[[str], None]], Clipboard]
"""Makes the clipboard: (display, on_change) -> Clipboard; on_change runs on the clipboard's thread."""


def _too_large(text: str) -> bool:
    return len(text.encode("utf-8", "surrogatepass")) > MAX_CLIPBOARD_BYTES


class HostClipboard:
    def __init__(self, factory: ClipboardFactory | None, settings: Callable[[], ClipboardSettings],
                 controller: Callable[[], bool], to_controller: Callable[[str], None]) -> None:
        self._factory = factory
        self._settings = settings
        self._controller = controller  # whether someone has control
        self._to_controller = to_controller  # pushes a host change to the controller
        self._clipboard: Clipboard | None = None

    @property
    def wanted(self) -> bool:
        return self._factory is not None and self._settings().mode != "off" and self._clipboard is None

    async def open(self, display: str) -> None:
        loop = asyncio.get_running_loop()

        def changed(text: str) -> None:  # clipboard thread
            loop.call_soon_threadsafe(self._on_host_change, text)

        assert self._factory is not None
        try:
            self._clipboard = await asyncio.to_thread(self._factory, display, changed)
        except Exception as exc:
            log.warning("clipboard_unavailable", error=f"{type(exc).__name__}: {exc}")

    def _allowed(self, direction: str) -> Clipboard:
        mode = self._settings().mode
        if mode not in (direction, "both"):
            raise Refused("forbidden", f"clipboard.mode is {mode}")
        if self._clipboard is None:
            raise Refused("unavailable", "the host clipboard is not available")
        return self._clipboard

    async def get(self) -> str | None:
        text = await asyncio.to_thread(self._allowed("from-host").get_text)
        if text is not None and _too_large(text):
            raise Refused("unavailable", f"the host clipboard holds more than {MAX_CLIPBOARD_BYTES} bytes")
        return text

    async def set(self, text: str) -> None:
        await asyncio.to_thread(self._allowed("to-host").set_text, text)

    def _on_host_change(self, text: str) -> None:
        if not self._controller() or self._settings().mode not in ("from-host", "both"):
            return
        if _too_large(text):
            log.info("clipboard_push_skipped", reason="too_large")
            return
        self._to_controller(text)

    async def close(self) -> None:
        if self._clipboard is not None:
            await asyncio.to_thread(self._clipboard.close)
            self._clipboard = None

"""desktop-runner: share an X11 screen to a LiveKit room, end-to-end encrypted."""

__version__ = "0.1.0"

"""Sound: the host's desktop audio to the viewers, and the controller's microphone into the host.

``format.py`` fixes the PCM format, ``pacing.py`` the pure decisions (10 ms frames, a bounded
backlog, when an outage is reported), ``pulse.py`` the audio server (PulseAudio or PipeWire's Pulse
server) through its command-line clients, ``capture.py`` the desktop audio and ``microphone.py``
the virtual microphone.
"""

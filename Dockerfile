# desktop-runner in a container. Not built on the project's own machines (no Docker engine
# there); every step below is a step CI runs through scripts/setup.sh, so the image installs the
# same way the tests do.
#
#   docker build -t desktop-runner .
#   # share the host's X display:
#   docker run --rm -e DISPLAY=:0 -v /tmp/.X11-unix:/tmp/.X11-unix:ro \
#     -v $HOME/.Xauthority:/home/runner/.Xauthority:ro -e XAUTHORITY=/home/runner/.Xauthority \
#     -e RUNNER_LIVEKIT__URL=wss://... -e RUNNER_LIVEKIT__API_KEY=... \
#     -v ./secrets:/run/secrets:ro -e RUNNER_LIVEKIT__API_SECRET_FILE=/run/secrets/livekit-api-secret \
#     -e RUNNER_E2EE__PASSPHRASE_FILE=/run/secrets/e2ee-passphrase desktop-runner
#   # or its own virtual screen: add -e RUNNER_XVFB=1920x1080 and leave out the X mounts.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends libyuv0 xvfb xauth x11-xserver-utils fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 runner
WORKDIR /opt/desktop-runner
COPY pyproject.toml README.md ./
COPY runner ./runner
RUN python -m venv .venv && .venv/bin/pip install --no-cache-dir . \
 && printf '%s\n' '#!/bin/sh' \
    'set -e' \
    'if [ -n "$RUNNER_XVFB" ]; then' \
    '  Xvfb :99 -screen 0 "${RUNNER_XVFB}x24" -nolisten tcp -noreset & export DISPLAY=:99' \
    '  for i in 1 2 3 4 5 6 7 8 9 10; do [ -S /tmp/.X11-unix/X99 ] && break; sleep 0.5; done' \
    'fi' \
    'exec /opt/desktop-runner/.venv/bin/desktop-runner "$@"' > /usr/local/bin/entrypoint \
 && chmod 0755 /usr/local/bin/entrypoint

USER runner
ENV RUNNER_LOG__FORMAT=json \
    RUNNER_METRICS__ADDRESS=127.0.0.1:9464
# Healthy only while frames are being published (/healthz, see README "Operations"); the
# endpoint listens on the container's loopback only. `desktop-runner check` is there for a
# one-off diagnosis: docker exec <container> desktop-runner check
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/desktop-runner/.venv/bin/python", "-c", "import sys, urllib.request\ntry:\n    sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=3).status == 200 else 1)\nexcept Exception:\n    sys.exit(1)"]
ENTRYPOINT ["/usr/local/bin/entrypoint"]

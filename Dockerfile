# desktop-runner in a container (README "Docker"). Build with BuildKit (the default builder of
# current Docker; with Debian's docker.io 20.10 set DOCKER_BUILDKIT=1):
#
#   docker build -t desktop-runner .
#   # behind a TLS-intercepting proxy, hand pip the CA bundle for the build only (never stored):
#   docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt -t desktop-runner .
#
# Its own virtual screen (Xvfb with a fresh X cookie), read-only, as uid 10001:
#
#   docker run --rm --read-only --tmpfs /tmp -e RUNNER_XVFB=1920x1080 \
#     -e RUNNER_LIVEKIT__URL=wss://... -e RUNNER_LIVEKIT__API_KEY=... \
#     -v ./secrets:/run/secrets:ro -e RUNNER_LIVEKIT__API_SECRET_FILE=/run/secrets/livekit-api-secret \
#     -e RUNNER_E2EE__PASSPHRASE_FILE=/run/secrets/e2ee-passphrase desktop-runner
#
# The host's X display instead: leave out RUNNER_XVFB and add
#
#     -e DISPLAY=:0 -v /tmp/.X11-unix:/tmp/.X11-unix:ro \
#     -v /path/to/cookie:/run/xauthority:ro -e XAUTHORITY=/run/xauthority
#
# (a cookie file readable by uid 10001: `xauth extract /path/to/cookie :0`, README "Docker").

# --- builder: compiles every wheel (evdev has none on PyPI), with compilers and headers --------
FROM python:3.11-slim-bookworm AS builder
# gcc and the kernel headers build evdev (pynput needs it on Linux); python3-dev only where the
# base lacks Python's headers (the real python image has them, a Debian-built stand-in not).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev linux-libc-dev \
 && if [ ! -f "$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-dev; fi \
 && rm -rf /var/lib/apt/lists/*
# pip from a venv: the real base has pip in its Python, a Debian-built one only through venv.
RUN python -m venv /build
WORKDIR /src
# The dependencies first, from pyproject.toml alone, so a change to the code reuses this layer.
COPY pyproject.toml ./
# ca-bundle: an optional BuildKit secret, mounted for this step only and never part of a layer.
# The pip cache is a BuildKit cache mount: kept by the builder between builds, never in the image.
RUN --mount=type=secret,id=ca-bundle \
    --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > requirements.txt \
 && /build/bin/pip wheel --wheel-dir /wheels -r requirements.txt
COPY README.md ./
COPY runner ./runner
RUN --mount=type=secret,id=ca-bundle \
    --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && /build/bin/pip wheel --no-deps --wheel-dir /wheels .

# --- runtime: the wheels and the libraries they load, no compiler ------------------------------
FROM python:3.11-slim-bookworm
# libyuv0: zero-copy BGRA -> I420 (runner/media/yuv.py). libxcb*: mss's default capture backend
# (MIT-SHM, RandR, XFixes pointer, Render); libx11-6/libxfixes3/libxrandr2: its Xlib fallback.
# xvfb + xauth: the own-screen mode with an X cookie. Xvfb's package pulls in Mesa's OpenGL
# drivers (libgl1 -> libgl1-mesa-dri -> LLVM, Z3, ICU: about 200 MB); the entrypoint starts
# Xvfb without GLX, so their files are left out (the packages count as installed; delete
# /etc/dpkg/dpkg.cfg.d/no-gl-drivers and reinstall them in a derived image that needs OpenGL).
RUN printf 'path-exclude %s\n' '/usr/lib/*/dri/*' '/usr/lib/*/libLLVM-15.so*' '/usr/lib/*/libz3.so*' \
      '/usr/lib/*/libicu*' '/usr/share/icu/*' >/etc/dpkg/dpkg.cfg.d/no-gl-drivers \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libyuv0 libxcb1 libxcb-randr0 libxcb-render0 libxcb-shm0 libxcb-xfixes0 \
      libx11-6 libxfixes3 libxrandr2 xvfb xauth \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 --user-group runner
# The wheels come in through a bind mount of the builder stage: installed, not stored. pip and
# setuptools leave the venv afterwards (nothing installs into it at run time; 25 MB).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/desktop-runner/.venv \
 && /opt/desktop-runner/.venv/bin/pip install --no-cache-dir --no-index --find-links /wheels desktop-runner \
 && /opt/desktop-runner/.venv/bin/pip check \
 && /opt/desktop-runner/.venv/bin/pip uninstall -q -y pip setuptools
COPY docker/entrypoint.py /opt/desktop-runner/entrypoint.py
LABEL org.opencontainers.image.title="desktop-runner" \
      org.opencontainers.image.description="Share an X11 screen with a browser over LiveKit, end-to-end encrypted"

USER runner
WORKDIR /home/runner
# DISPLAY/XAUTHORITY: where the own Xvfb listens and its cookie lives, so `docker exec` commands
# (desktop-runner check) find it; host-X mode overrides both with -e. No sound: the image has no
# audio client (parec) and no audio server, so audio.enabled is off rather than failing at every start.
ENV PATH=/opt/desktop-runner/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    DISPLAY=:99 \
    XAUTHORITY=/tmp/.Xauthority \
    RUNNER_LOG__FORMAT=json \
    RUNNER_AUDIO__ENABLED=false \
    RUNNER_METRICS__ADDRESS=127.0.0.1:9464
# Healthy only while frames are being published (/healthz, see README "Operations"); the
# endpoint listens on loopback only (with --network host: the host's, so give each container its
# own port with RUNNER_METRICS__ADDRESS=127.0.0.1:PORT; the check follows that variable). `desktop-runner check` is there for a
# one-off diagnosis: docker exec <container> desktop-runner check
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/desktop-runner/.venv/bin/python", "-c", "import os, sys, urllib.request\nport = os.environ.get('RUNNER_METRICS__ADDRESS', '127.0.0.1:9464').rsplit(':', 1)[1]\ntry:\n    sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=3).status == 200 else 1)\nexcept Exception:\n    sys.exit(1)"]
ENTRYPOINT ["/opt/desktop-runner/.venv/bin/python", "-I", "/opt/desktop-runner/entrypoint.py"]

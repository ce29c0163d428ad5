#!/usr/bin/env bash
# Installs everything `make demo` and `make test` need, idempotently: Debian packages (Xvfb,
# Chromium, X tools), a pinned livekit-server built from the Go module proxy, the Python
# environment (.venv) and the Node packages (node_modules). Safe to run again: each step checks
# first and does nothing when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

LIVEKIT_SERVER_VERSION="${LIVEKIT_SERVER_VERSION:-v1.13.5}"
LIVEKIT_SERVER_BIN="${LIVEKIT_SERVER_BIN:-/usr/local/bin/livekit-server}"
PYTHON="${PYTHON:-python3}"

say() { printf '[setup] %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------------
# iproute2 + iptables: the slow-link tests build their path from network namespaces, veth pairs,
# tbf and a firewall rule per namespace (tests/netpath.py).
# libyuv0: the runner converts BGRA to I420 with it (runner/media/yuv.py; optional at run time).
# Xorg with the dummy driver (+ xcvt, setxkbmap): several monitors and non-US keymaps in tests;
# xclip: checks the clipboard from another X client; systemd: systemd-analyze verifies the units.
# libxcursor1: tests/test_viewer_pointer.py defines an animated X cursor with it (also pulled in by
# chromium and xsetroot; named so the test does not rest on that).
# Sound: the runner captures and plays through pulseaudio-utils (parec, pacat, pactl); the tests
# start a private PulseAudio server (pulseaudio) to play tones into and record from.
# docker.io + debootstrap: the image is built and run by the tests (the engine is started by .ci/run
# through docker/dockerd-up.sh; docker/build-base.sh makes the base image when it cannot be pulled).
# libopenh264-7: the SDK path's encoder (OpenH264), compared with ours in bench/bench_quality.py.
# fonts-dejavu-core also draws the text of the quality clips (tests/screen_quality.py).
APT_PACKAGES=(libyuv0 xvfb xauth chromium xdotool x11-utils x11-xserver-utils fonts-dejavu-core
  xserver-xorg-core xserver-xorg-video-dummy xcvt x11-xkb-utils xclip systemd docker.io debootstrap git
  libxcursor1 pulseaudio pulseaudio-utils libopenh264-7 iproute2 iptables)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages present"
fi

# --- livekit-server, pinned, from the Go module proxy ----------------------------------------
if [ -x "$LIVEKIT_SERVER_BIN" ] && "$LIVEKIT_SERVER_BIN" --version 2>/dev/null | grep -q "${LIVEKIT_SERVER_VERSION#v}"; then
  say "livekit-server ${LIVEKIT_SERVER_VERSION} present"
else
  command -v go >/dev/null || { echo "setup: Go is required to build livekit-server (go install); install Go >= 1.26" >&2; exit 1; }
  say "building livekit-server ${LIVEKIT_SERVER_VERSION} with go install (first time takes a few minutes)"
  gobin="$(mktemp -d)"
  GOBIN="$gobin" GOFLAGS=-mod=mod go install "github.com/livekit/livekit-server/cmd/server@${LIVEKIT_SERVER_VERSION}"
  SUDO=""; [ -w "$(dirname "$LIVEKIT_SERVER_BIN")" ] || SUDO="sudo"
  $SUDO install -m 0755 "$gobin/server" "$LIVEKIT_SERVER_BIN"
  rm -rf "$gobin"
fi

# --- Python environment ----------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing the Python package and test dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[test]"
  rm -f .venv/.installed-*; touch "$stamp"
else
  say "Python environment up to date"
fi

# --- Node packages ---------------------------------------------------------------------------
nstamp="node_modules/.installed-$(sha256sum package.json package-lock.json 2>/dev/null | sha256sum | cut -c1-16)"
if [ ! -f "$nstamp" ]; then
  command -v npm >/dev/null || { echo "setup: Node.js 20 with npm is required for the viewer tests (install it, e.g. from NodeSource; Debian 12's nodejs is 18)" >&2; exit 1; }
  say "installing Node packages"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$nstamp"
else
  say "Node packages up to date"
fi
say "ready"

#!/bin/sh
# Starts the Docker engine when none answers (CI: tests/test_docker.py and test_host_install.py
# need one). Prints the PID of the dockerd it started, nothing when one was already running.
# Needs root; Debian's docker.io (scripts/setup.sh installs it). Log: $DOCKERD_LOG.
set -eu
if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
if "$DOCKER" info >/dev/null 2>&1; then
    exit 0
fi
command -v dockerd >/dev/null || { echo "dockerd-up: dockerd not found (apt-get install docker.io)" >&2; exit 1; }
dockerd >"$LOG" 2>&1 &
pid=$!
i=0
until "$DOCKER" info >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "dockerd-up: dockerd exited; log $LOG:" >&2; tail -20 "$LOG" >&2; exit 1
    fi
    i=$((i + 1))
    if [ "$i" -gt 120 ]; then
        echo "dockerd-up: dockerd did not answer within 60 s; log $LOG" >&2; kill "$pid"; exit 1
    fi
    sleep 0.5
done
echo "$pid"

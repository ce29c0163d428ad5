# A stand-in for python:3.11-slim-bookworm where no registry is reachable (docker/build-base.sh
# builds it on a debootstrapped Debian 12 and tags it with the real name). What the project's
# Dockerfile relies on is what the real image provides too: Python 3.11 as `python` and
# `python3`, `python -m venv`, CA certificates. (The real image also has the C headers;
# the project's builder stage installs them where they are missing.)
ARG DEBIAN_IMAGE=desktop-runner/debian:bookworm-minbase
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python-is-python3 ca-certificates netbase tzdata \
 && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["python3"]

#!/bin/sh
# Makes the base images locally when they cannot be pulled (no registry reachable), and does
# nothing when they are already there:
#
#   desktop-runner/debian:bookworm-minbase   a plain Debian 12 (debootstrap --variant=minbase),
#                                            the "fresh host" of the host-install test
#   python:3.11-slim-bookworm                pulled when the registry answers; otherwise a stand-in
#                                            built on the image above from docker/base.Dockerfile
#                                            (Debian's Python 3.11 with venv and headers), under the
#                                            real name, so the Dockerfile keeps its standard FROM line
#
# Needs root (debootstrap) and a running Docker engine. DEBIAN_MIRROR overrides the mirror;
# DOCKER the client (default: docker). Usage: docker/build-base.sh
set -eu
cd "$(dirname "$0")"

DOCKER="${DOCKER:-docker}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_IMAGE=desktop-runner/debian:bookworm-minbase
PYTHON_IMAGE=python:3.11-slim-bookworm

say() { printf '[build-base] %s\n' "$*"; }
have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
# Images this script made carry the hash of its recipe (this file and base.Dockerfile): a changed
# recipe makes them again; a pulled python image has no such label and is kept.
RECIPE="$(cat build-base.sh base.Dockerfile | sha256sum | cut -c1-16)"
LABEL=org.desktop-runner.base-recipe
ours_current() {
    [ "$("$DOCKER" image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null)" = "$RECIPE" ]
}

if ours_current "$DEBIAN_IMAGE"; then
    say "$DEBIAN_IMAGE present"
else
    command -v debootstrap >/dev/null || { echo "build-base: debootstrap is required (apt-get install debootstrap)" >&2; exit 1; }
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' EXIT
    say "debootstrap --variant=minbase bookworm (about a minute)"
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$root.log" 2>&1 \
        || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
    rm -f "$root.log"
    # The updates and security suites, as Debian's own images have them.
    cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
SOURCES
    # Slim, as Debian's and Python's slim images are: no manuals, documentation or translations
    # (copyright files stay), now and for every package installed later; no .deb cache.
    cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
SLIM
    find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian/*
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"$root/etc/apt/apt.conf.d/docker-clean"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
        "$root"/var/log/* "$root"/tmp/*
    tar -C "$root" --numeric-owner -c . | "$DOCKER" import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' \
        -c "LABEL $LABEL=$RECIPE" - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$root"
    trap - EXIT
    say "$DEBIAN_IMAGE imported"
fi

if ours_current "$PYTHON_IMAGE"; then
    say "$PYTHON_IMAGE present (stand-in)"
elif have "$PYTHON_IMAGE" && [ -z "$("$DOCKER" image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$PYTHON_IMAGE")" ]; then
    say "$PYTHON_IMAGE present"
elif timeout 60 "$DOCKER" pull -q "$PYTHON_IMAGE" >/dev/null 2>&1; then
    say "$PYTHON_IMAGE pulled"
else
    say "$PYTHON_IMAGE cannot be pulled: building a stand-in from $DEBIAN_IMAGE"
    DOCKER_BUILDKIT=1 "$DOCKER" build -q --network host --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
        --label "$LABEL=$RECIPE" -t "$PYTHON_IMAGE" -f base.Dockerfile . >/dev/null
    say "$PYTHON_IMAGE built"
fi

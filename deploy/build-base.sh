#!/usr/bin/env bash
# Prepares what `docker build -f deploy/Dockerfile .` needs where no registry or package index is
# reachable from inside Docker:
#
#   1. the base image tensorgrid-base:bookworm: Debian bookworm (minbase) with python3 and its venv
#      module, made with debootstrap from the Debian mirror and `docker import`ed. Skipped when the
#      image already exists. Needs root, debootstrap and a Docker engine.
#   2. deploy/wheels/: the tensorgrid wheel, rebuilt from this checkout on every run, and binary
#      wheels of its dependencies for each Python in PYTHON_VERSIONS, downloaded on the host.
#      The download is skipped while the dependency list, Pythons and platform are unchanged,
#      so a rerun works offline.
#
# Usage: bash deploy/build-base.sh [--wheels-only | --base-only] [--gpu]
#   --wheels-only   only step 2 (for instance when the base is a public Python image)
#   --base-only     only step 1 (CI makes the base before the tests, which make their own wheels)
#   --gpu           fill deploy/wheels-gpu/ instead, adding the `gpu` extra (CuPy) and the CUDA
#                   libraries from PyPI (about 1.2 GB a Python), for the GPU worker's image:
#                   --build-arg WHEELS=deploy/wheels-gpu
#                   --build-arg PACKAGES="tensorgrid[gpu] cupy-cuda12x[ctk]"
# Needs, up front: a Python with pip, setuptools>=64 and wheel (it builds the tensorgrid wheel
# without fetching a build backend, so a rerun works offline: `python3 -m pip install wheel`), and,
# for the base image, root, debootstrap and a Docker engine.
# Environment:
#   PYTHON            the Python that builds and downloads the wheels (default python3)
#   BASE_TAG          the base image's tag (default tensorgrid-base:bookworm)
#   DEBIAN_MIRROR     the Debian mirror (default http://deb.debian.org/debian)
#   PYTHON_VERSIONS   Pythons to fetch wheels for (default "3.11 3.12": bookworm's python3 and
#                     the Dockerfile's default base, python:3.12-slim)
#
# Then: docker build --build-arg BASE_IMAGE=tensorgrid-base:bookworm -f deploy/Dockerfile -t tensorgrid .
set -euo pipefail

PYTHON=${PYTHON:-python3}
BASE_TAG=${BASE_TAG:-tensorgrid-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON_VERSIONS=${PYTHON_VERSIONS:-3.11 3.12}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELS=$ROOT/deploy/wheels

base=1
wheels=1
requirements=(tensorgrid)
for arg in "$@"; do
    case $arg in
        --wheels-only) base=0 ;;
        --base-only) wheels=0 ;;
        --gpu) requirements=("tensorgrid[gpu]" "cupy-cuda12x[ctk]"); WHEELS=$ROOT/deploy/wheels-gpu ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-base.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "build-base.sh: $*" >&2; exit 1; }

build_base() {
    if docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
        echo "base image $BASE_TAG exists; not rebuilding it (docker rmi $BASE_TAG to force)"
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root to build $BASE_TAG"
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    local rootfs
    rootfs=$(mktemp -d /tmp/tensorgrid-rootfs.XXXXXX)
    # The rootfs is a few hundred MB: never leave it behind, even on failure.
    trap 'rm -rf "$rootfs"' EXIT
    echo "debootstrap bookworm into $rootfs from $DEBIAN_MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$DEBIAN_MIRROR" \
        > "$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"; }
    rm -f "$rootfs.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc \
        "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/locale
    tar -C "$rootfs" --numeric-owner -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        - "$BASE_TAG" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    echo "built $BASE_TAG"
}

check_python() {
    "$PYTHON" - <<'PY' || die "$PYTHON cannot build the tensorgrid wheel offline: it needs pip, setuptools>=64 and wheel ($PYTHON -m pip install 'setuptools>=64' wheel)"
import sys
from importlib import metadata
try:
    import pip, wheel  # noqa: F401
    major = int(metadata.version("setuptools").split(".")[0])
except (ImportError, metadata.PackageNotFoundError, ValueError):
    sys.exit(1)
sys.exit(0 if major >= 64 else 1)
PY
}

build_wheels() {
    mkdir -p "$WHEELS"
    # The new wheel replaces the old one only once it is built: a failed run leaves the folder usable.
    local fresh
    fresh=$(mktemp -d "$WHEELS/.build.XXXXXX")
    "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$fresh" "$ROOT" \
        || { rm -rf "$fresh"; die "cannot build the tensorgrid wheel from $ROOT"; }
    rm -f "$WHEELS"/tensorgrid-*.whl
    mv "$fresh"/tensorgrid-*.whl "$WHEELS"/
    rm -rf "$fresh"
    local wheel
    wheel=$(ls "$WHEELS"/tensorgrid-*.whl)
    local arch
    arch=$(uname -m)
    # What the downloaded set depends on: when it is unchanged, the wheels there are still right.
    local stamp
    stamp=$("$PYTHON" - "$wheel" <<PY
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    print("\n".join(l for l in z.read(meta).decode().splitlines() if l.startswith("Requires-Dist")))
print("requirements: ${requirements[*]}\npythons: $PYTHON_VERSIONS\narch: $arch")
PY
)
    if [ -f "$WHEELS/.stamp" ] && [ "$(cat "$WHEELS/.stamp")" = "$stamp" ]; then
        echo "dependency wheels in $WHEELS are current"
        return
    fi
    local specs=()
    for r in "${requirements[@]}"; do
        # The local wheel stands for `tensorgrid`, so pip takes its dependencies from it.
        specs+=("${r/#tensorgrid/$wheel}")
    done
    for py in $PYTHON_VERSIONS; do
        echo "downloading dependency wheels for Python $py ($arch)"
        # bookworm has glibc 2.36: any manylinux up to 2_28 runs there (and on python:3.12-slim).
        "$PYTHON" -m pip download --quiet --only-binary=:all: --dest "$WHEELS" \
            --python-version "$py" --implementation cp \
            --platform "manylinux_2_28_$arch" --platform "manylinux_2_17_$arch" \
            --platform "manylinux2014_$arch" "${specs[@]}" \
            || die "cannot download the dependency wheels for Python $py"
    done
    printf '%s\n' "$stamp" > "$WHEELS/.stamp"
}

[ "$base" = 1 ] || [ "$wheels" = 1 ] || die "--wheels-only and --base-only leave nothing to do"
[ "$wheels" = 0 ] || check_python
if [ "$base" = 1 ]; then
    command -v docker >/dev/null || die "docker is missing"
    docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info fails)"
    build_base
fi
if [ "$wheels" = 1 ]; then
    build_wheels
    echo "wheels: $(ls "$WHEELS" | grep -c '\.whl$') in $WHEELS ($(du -sh "$WHEELS" | cut -f1))"
fi

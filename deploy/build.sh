#!/usr/bin/env bash
# Build kafka2sidekiq the way a release is built and install it into a new virtualenv:
# the sdist of this source tree, a wheel built from that sdist alone (build isolation
# fetches setuptools and Cython; a C compiler compiles the encoder), then a fresh venv with
# the wheel and its dependencies. The Dockerfile's build stage runs it; so do the tests.
#
#   deploy/build.sh PREFIX [DIST]
#     PREFIX  the virtualenv to create (must not exist), e.g. /opt/kafka2sidekiq
#     DIST    where to leave the sdist and the wheel (default: a temporary folder, removed)
#   PYTHON    the Python that builds, and that the venv is made from (default python3);
#             it needs pip >= 23.1 and the `build` package
set -euo pipefail
prefix=${1:?usage: deploy/build.sh PREFIX [DIST]}
src=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
if [ -e "$prefix" ]; then
    echo "deploy/build.sh: $prefix already exists; give a new path" >&2
    exit 1
fi
if ! "$py" -c 'import build' 2>/dev/null; then
    echo "deploy/build.sh: $py cannot import 'build': $py -m pip install build" >&2
    exit 1
fi
if [ -n "${2:-}" ]; then
    dist=$2
    mkdir -p "$dist"
else
    dist=$(mktemp -d)
    trap 'rm -rf "$dist"' EXIT
fi
# the sdist, then the wheel from that sdist (not from $src), each in an isolated environment;
# unlike `pip wheel`, this leaves no copy of our wheel in pip's cache
"$py" -m build --outdir "$dist" "$src"
"$py" -m venv --without-pip "$prefix"
"$py" -m pip --python "$prefix/bin/python" install -q "$dist"/kafka2sidekiq-*.whl
echo "deploy/build.sh: $("$prefix/bin/kafka2sidekiq" --version) in $prefix"

#!/usr/bin/env bash
# Installs everything the project needs: Debian build deps (as root), .venv with pinned deps, the library
# (editable), and the test-only MongoDB wire-protocol server in its own venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# chromium: the headless browser of the UI tests (Playwright drives the system build, no browser download);
# faketime: tests pin a subprocess's wall clock.
# redis-server: the weight budget tests start a private one (and kill it) to test a store going away.
# prometheus (2.42, with promtool): the monitoring tests run the real server and promtool on deploy/prometheus/.
# podman, runc, debootstrap: `make images` and tests/images build and run the images (runc: see scripts/containers.conf;
# debootstrap: the stand-in base images where no registry can be reached).
for pkg in pkg-config libmariadb-dev chromium faketime redis-server prometheus podman runc debootstrap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
  else
    echo "missing Debian packages: ${need_apt[*]} (run 'make install' as root or install them)" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
[[ -x .venv/bin/uv ]] || .venv/bin/pip install -q uv==0.13.8
# Runtime: exactly the hash-checked lock (the same set both images install); then the dev tools, held to it.
.venv/bin/uv pip install --python .venv/bin/python -q --require-hashes -r requirements.lock
.venv/bin/uv pip install --python .venv/bin/python -q -r requirements-dev.txt -c requirements.lock
.venv/bin/uv pip install --python .venv/bin/python -q -e .

# Test-only MongoDB wire-protocol server (GPL, beta): its own venv, never in requirements.txt or the image.
[[ -x .venv-mongo/bin/python ]] || "$PYTHON" -m venv .venv-mongo
.venv/bin/uv pip install --python .venv-mongo/bin/python -q secantusdb==0.7.0b3

.venv/bin/python -m binance_extractor --help >/dev/null
echo "installed: .venv (runtime + dev), .venv-mongo (test Mongo server)"

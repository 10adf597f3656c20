#!/usr/bin/env bash
# `make images`: both Dockerfile targets, with podman (docker only where podman is missing and a daemon answers).
#
#   EXTRACTOR_IMAGE   tag of the pod image     (default localhost/binance-extractor:<version>)
#   AIRFLOW_TAG       tag of the Airflow image (default localhost/binance-airflow:<version>)
#   PYTHON_IMAGE, AIRFLOW_IMAGE   the bases (default: the real names, as in the Dockerfile, fully qualified)
#   STANDINS=0        never build stand-ins: use the bases as they are (present locally or pulled by the build)
#
# Where a base cannot be pulled (no registry, as on this machine), scripts/standin-images.sh builds a stand-in
# under its real name first. Built layers are cached by the engine: a second run only rebuilds what changed
# (a source change rebuilds the layers that copy the sources, never the dependency layers). Prints each image's
# size at the end; IMAGES_SIZES_FILE, when set, gets them as JSON.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/container-engine.sh
source "$ROOT/scripts/container-engine.sh"
cd "$ROOT"

# the package's one version (pyproject.toml reads it from there too: its own `version` is dynamic)
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' binance_extractor/version.py)
if [[ -z $version ]]; then
  echo "images.sh: no __version__ in binance_extractor/version.py" >&2
  exit 2
fi
EXTRACTOR_IMAGE=${EXTRACTOR_IMAGE:-localhost/binance-extractor:$version}
AIRFLOW_TAG=${AIRFLOW_TAG:-localhost/binance-airflow:$version}
export PYTHON_IMAGE=${PYTHON_IMAGE:-docker.io/library/python:3.11-slim}
export AIRFLOW_IMAGE=${AIRFLOW_IMAGE:-docker.io/apache/airflow:3.3.2-python3.11}

if [[ ${STANDINS:-1} != 0 ]]; then
  bash scripts/standin-images.sh python airflow
fi

build() {
  local target=$1 tag=$2
  echo "== building target $target as $tag ($ENGINE)"
  "$ENGINE" build --network host --target "$target" \
    --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --build-arg "AIRFLOW_IMAGE=$AIRFLOW_IMAGE" \
    -t "$tag" -f Dockerfile .
}

build extractor "$EXTRACTOR_IMAGE"
build airflow "$AIRFLOW_TAG"

sizes=()
for image in "$EXTRACTOR_IMAGE" "$AIRFLOW_TAG" "$PYTHON_IMAGE" "$AIRFLOW_IMAGE"; do
  bytes=$("$ENGINE" image inspect --format '{{.Size}}' "$image")
  printf '%-55s %6d MB\n' "$image" $((bytes / 1000000))
  sizes+=("\"$image\": $bytes")
done
if [[ -n ${IMAGES_SIZES_FILE:-} ]]; then
  (IFS=,; printf '{%s}\n' "${sizes[*]}") >"$IMAGES_SIZES_FILE"
fi

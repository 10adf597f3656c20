# Sourced by the image scripts: picks the container engine and exports ENGINE.
# podman first (rootful, with scripts/containers.conf unless CONTAINERS_CONF is already set); docker only when
# podman is missing and a Docker daemon answers. The image tests need podman (`podman kube play`).
_engine_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${ENGINE:-} ]]; then
  if command -v podman >/dev/null 2>&1; then
    ENGINE=podman
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    ENGINE=docker
  else
    echo "no container engine: install podman (make install does, as root) or start a Docker daemon" >&2
    exit 1
  fi
fi
if [[ $ENGINE == podman ]]; then
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$_engine_root/scripts/containers.conf}
fi
export ENGINE

# image_label IMAGE KEY: the label's value, empty when the image or the label is missing.
image_label() {
  "$ENGINE" image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null | sed 's/^<no value>$//'
}

# image_exists IMAGE
image_exists() {
  "$ENGINE" image inspect "$1" >/dev/null 2>&1
}

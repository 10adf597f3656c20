#!/usr/bin/env bash
# Stand-ins for the images this project builds FROM or runs beside, for machines that reach no image registry
# (../shared/NOTES-verified.md, "Containers"). Each is made from Debian packages and PyPI, shaped like the real
# image where the builds and pods depend on it, and tagged under the real name, so the Dockerfile and the rendered
# pods use them unchanged:
#
#   python    docker.io/library/python:3.11-slim          debootstrap + scripts/standins/python.Containerfile
#   airflow   docker.io/apache/airflow:3.3.2-python3.11   scripts/standins/airflow.Containerfile
#   sidecar   docker.io/library/alpine:3.24.2             busybox: the KubernetesPodOperator XCom sidecar
#
# Usage: scripts/standin-images.sh [python|airflow|sidecar ...]   (default: all three)
#
# Idempotent and cheap when done: an image labelled org.binance-extractor.standin=<hash of its inputs> is kept
# as is; an image under the name without that label is a real one and is never replaced; a missing image is first
# pulled (fails at once without a registry), then built. STANDIN_NO_PULL=1 skips the pull.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/container-engine.sh
source "$ROOT/scripts/container-engine.sh"

PYTHON_IMAGE=${PYTHON_IMAGE:-docker.io/library/python:3.11-slim}
AIRFLOW_IMAGE=${AIRFLOW_IMAGE:-docker.io/apache/airflow:3.3.2-python3.11}
SIDECAR_IMAGE=${SIDECAR_IMAGE:-docker.io/library/alpine:3.24.2}
LABEL=org.binance-extractor.standin
SUITE=bookworm
CA_BUNDLE=${STANDIN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
STANDINS=$ROOT/scripts/standins
WORK_ROOT=${STANDIN_WORK_DIR:-/var/tmp/binance-extractor-standins}

mirror() {
  # The Debian mirror this machine's apt uses (deb822 or one-line sources), unless DEBIAN_MIRROR says otherwise.
  if [[ -n ${DEBIAN_MIRROR:-} ]]; then
    echo "$DEBIAN_MIRROR"
  elif [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources
  else
    awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || echo http://deb.debian.org/debian
  fi
}

digest() { sha256sum | cut -c1-16; }

# Each stand-in's hash covers what makes it: its files, the functions that build it, the mirror, the CA bundle.
python_hash() {
  { cat "$STANDINS/python.Containerfile" "$STANDINS/pip.lock" "$CA_BUNDLE"; declare -f debootstrap_rootfs build_python; mirror; } | digest
}
airflow_hash() {
  { python_hash; cat "$STANDINS/airflow.Containerfile" "$STANDINS/airflow-entrypoint.sh"; declare -f build_airflow; } | digest
}
sidecar_hash() {
  { declare -f build_sidecar; mirror; } | digest
}

# ensure NAME IMAGE: 0 when IMAGE is already what we would build (or a real image); 1 when it must be built.
ensure() {
  local name=$1 image=$2 want=$3 have
  if image_exists "$image"; then
    have=$(image_label "$image" "$LABEL")
    if [[ -z $have ]]; then
      echo "$name: $image is a real image, kept"
      return 0
    fi
    if [[ $have == "$want" ]]; then
      echo "$name: stand-in $image is current ($want)"
      return 0
    fi
    echo "$name: stand-in $image is outdated ($have), rebuilding"
    STALE+=("$("$ENGINE" image inspect --format '{{.Id}}' "$image")")
    return 1
  fi
  if [[ ${STANDIN_NO_PULL:-} != 1 ]] && "$ENGINE" pull -q "$image" >/dev/null 2>&1; then
    echo "$name: pulled the real $image"
    return 0
  fi
  echo "$name: $image cannot be pulled, building a stand-in ($want)"
  return 1
}

debootstrap_rootfs() {
  # A minimal bookworm with Python 3.11, slimmed like debian:bookworm-slim and python:3.11-slim: no docs or man
  # pages, apt caches cleaned after every install, Python's C headers (unpacked from the -dev packages, as the
  # real image has them without the rest of a toolchain) and no byte-code or static libpython.
  local dir=$1 mirror_url
  mirror_url=$(mirror)
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates,netbase,tzdata \
    "$SUITE" "$dir" "$mirror_url" >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; return 1; }
  mkdir -p "$dir/etc/dpkg/dpkg.cfg.d" "$dir/etc/apt/apt.conf.d"
  cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
DPKG
  cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::GzipIndexes "true";
Acquire::Languages "none";
APT
  # This machine's mirror may serve a snapshot whose Release files are past their Valid-Until date.
  printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' >"$dir/etc/apt/apt.conf.d/99standin"
  cat >"$dir/etc/apt/sources.list" <<SOURCES
deb $mirror_url $SUITE main
deb $mirror_url $SUITE-updates main
SOURCES
  # The headers of the very Python the root filesystem holds (same mirror state, downloaded inside it).
  chroot "$dir" apt-get update -q >/dev/null
  chroot "$dir" sh -c 'cd /tmp && apt-get download -q python3.11-dev libpython3.11-dev' >/dev/null 2>&1
  for deb in "$dir"/tmp/*.deb; do dpkg-deb -x "$deb" "$dir/tmp/dev"; done
  cp -a "$dir/tmp/dev/usr/include/." "$dir/usr/include/"
  rm -rf "$dir"/tmp/*.deb "$dir/tmp/dev"
  find "$dir/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  find "$dir/usr/lib/python3.11" -depth -name __pycache__ -type d -exec rm -rf {} +
  rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/* "$dir"/var/lib/apt/lists/* \
    "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb "$dir"/var/log/*.log "$dir"/var/log/apt/*
}

build_python() {
  local want=$1 work rootfs_tag
  work=$(mktemp -d "$WORK_ROOT/python.XXXXXX")
  rootfs_tag=localhost/binance-extractor-standin/rootfs:$want
  debootstrap_rootfs "$work/rootfs"
  tar -C "$work/rootfs" -c . | "$ENGINE" import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" - "$rootfs_tag" >/dev/null
  rm -rf "$work/rootfs"
  cp "$STANDINS/python.Containerfile" "$STANDINS/pip.lock" "$work/"
  cp "$CA_BUNDLE" "$work/ca-certificates.crt"
  "$ENGINE" build --network host --build-arg "ROOTFS=$rootfs_tag" --label "$LABEL=$want" \
    -f "$work/python.Containerfile" -t "$PYTHON_IMAGE" "$work"
  rm -rf "$work"
}

build_airflow() {
  local want=$1
  "$ENGINE" build --network host --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --label "$LABEL=$want" \
    -f "$STANDINS/airflow.Containerfile" -t "$AIRFLOW_IMAGE" "$STANDINS"
}

build_sidecar() {
  # busybox-static from the Debian mirror, every applet linked as alpine has them: the sidecar runs sh and sleep;
  # KubernetesPodOperator's exec runs sh, cat, id, pgrep and kill in it.
  local want=$1 work
  work=$(mktemp -d "$WORK_ROOT/sidecar.XXXXXX")
  (cd "$work" && apt-get download -q busybox-static >/dev/null)
  dpkg-deb -x "$work"/busybox-static_*.deb "$work/deb"
  mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp" "$work/rootfs/etc"
  cp "$work/deb/bin/busybox" "$work/rootfs/bin/busybox"
  for applet in $("$work/rootfs/bin/busybox" --list); do
    [[ -e $work/rootfs/bin/$applet ]] || ln -s busybox "$work/rootfs/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$work/rootfs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$work/rootfs/etc/group"
  chmod 1777 "$work/rootfs/tmp"
  tar -C "$work/rootfs" -c . | "$ENGINE" import --change "ENV PATH=/bin" --change 'CMD ["/bin/sh"]' \
    --change "LABEL $LABEL=$want" - "$SIDECAR_IMAGE" >/dev/null
  rm -rf "$work"
}

STALE=()

main() {
  local targets=("$@")
  ((${#targets[@]})) || targets=(python airflow sidecar)
  mkdir -p "$WORK_ROOT"
  # One builder at a time on this machine (several worktrees may run `make images` at once).
  exec 9>"$WORK_ROOT/.lock"
  flock 9
  for target in "${targets[@]}"; do
    case $target in
      python) ensure python "$PYTHON_IMAGE" "$(python_hash)" || build_python "$(python_hash)" ;;
      airflow)
        ensure python "$PYTHON_IMAGE" "$(python_hash)" || build_python "$(python_hash)"
        ensure airflow "$AIRFLOW_IMAGE" "$(airflow_hash)" || build_airflow "$(airflow_hash)"
        ;;
      sidecar) ensure sidecar "$SIDECAR_IMAGE" "$(sidecar_hash)" || build_sidecar "$(sidecar_hash)" ;;
      *)
        echo "unknown stand-in $target (python, airflow or sidecar)" >&2
        exit 2
        ;;
    esac
  done
  # Outdated stand-ins, now untagged: removed unless an image built on them still needs them.
  for id in "${STALE[@]}"; do "$ENGINE" rmi "$id" >/dev/null 2>&1 || true; done
}

main "$@"

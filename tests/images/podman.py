"""podman for the image tests: the repository's engine settings, and the images built once per session.

``build_images()`` runs ``scripts/images.sh`` (what ``make images`` runs: stand-in bases where no registry can be
reached, then both Dockerfile targets) under tags of this checkout's own, so two worktrees testing at once never
run each other's images; the engine's layer cache makes a second build take seconds. ``run()`` is ``podman``
with ``scripts/containers.conf`` (../shared/NOTES-verified.md, "Containers").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "scripts" / "containers.conf"
BUILD_TIMEOUT = 3600  # the first build of the stand-ins and both images takes ~15 min on 2 busy cores
SIDECAR_IMAGE = "docker.io/library/alpine:3.24.2"
MARKS = [pytest.mark.images, pytest.mark.xdist_group("images"), pytest.mark.timeout(BUILD_TIMEOUT + 600)]


def engine_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def run(
    args: Sequence[str], *, timeout: float = 600, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``podman ARGS``; with ``check``, a failure is an AssertionError carrying the command's output."""
    podman = shutil.which("podman")
    assert podman, "podman is missing: `make install` installs it (as root)"
    out = subprocess.run(
        [podman, *args], capture_output=True, text=True, timeout=timeout, env=engine_env(), input=input
    )
    if check:
        assert out.returncode == 0, f"podman {' '.join(args[:3])} ... exited {out.returncode}:\n{out.stderr[-4000:]}"
    return out


@dataclass(frozen=True)
class Images:
    extractor: str
    airflow: str
    sizes: dict[str, int]  # bytes, by image name (both targets and both bases)
    python_base: str = "docker.io/library/python:3.11-slim"
    airflow_base: str = "docker.io/apache/airflow:3.3.2-python3.11"


def checkout_tag() -> str:
    """A tag naming this checkout (its path), so parallel worktrees keep their images apart."""
    return "test-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]


def build_images(workdir: Path) -> Images:
    tag = checkout_tag()
    images = Images(f"localhost/binance-extractor:{tag}", f"localhost/binance-airflow:{tag}", {})
    sizes = workdir / "sizes.json"
    env = engine_env() | {
        "EXTRACTOR_IMAGE": images.extractor,
        "AIRFLOW_TAG": images.airflow,
        "IMAGES_SIZES_FILE": str(sizes),
    }
    for cmd in (["bash", "scripts/images.sh"], ["bash", "scripts/standin-images.sh", "sidecar"]):
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return Images(images.extractor, images.airflow, json.loads(sizes.read_text()))

"""Stand-in for the container image without a Docker engine (shared by the Dockerfile and pod tests).

``image_app()`` copies exactly what the Dockerfile's runtime stage COPYs from the build context (after
.dockerignore) into a directory that plays ``/app``; ``image_env()`` maps the image's ENV onto it. The
project's venv interpreter plays ``/opt/venv`` (the image installs the same pinned requirements.txt).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
from pathlib import Path

from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
POD_TEMPLATE = ROOT / "k8s_pod_templates" / "extractor-pod.yaml"
APP_DIR = "/app"

Instruction = tuple[str, str]


EXTRACTOR_TARGET = "extractor"


def target_content(target: str | None) -> str:
    """The Dockerfile as ``docker build --target TARGET`` sees it: every stage up to and including TARGET."""
    lines = DOCKERFILE.read_text().splitlines(keepends=True)
    if target is None:
        return "".join(lines)
    out: list[str] = []
    seen = False
    for line in lines:
        words = line.split()
        if words[:1] == ["FROM"]:
            if seen:
                break
            seen = [w.lower() for w in words[-2:]] == ["as", target.lower()]
        out.append(line)
    if not seen:
        raise AssertionError(f"Dockerfile has no stage named {target}")
    return "".join(out)


def parser(target: str | None = EXTRACTOR_TARGET) -> DockerfileParser:
    """The extractor image's build by default (its last stage is ``stages(...)[-1]``); ``target=None``: the whole
    file, whose last stage is the default build, the Airflow image."""
    return DockerfileParser(fileobj=io.BytesIO(target_content(target).encode()))


def instructions(df: DockerfileParser) -> list[Instruction]:
    return [(i["instruction"], i["value"]) for i in df.structure if i["instruction"] != "COMMENT"]


def global_args(df: DockerfileParser) -> dict[str, str]:
    """The ARGs declared before the first FROM (the build arguments FROM may use), with their defaults."""
    out: dict[str, str] = {}
    for instr, value in instructions(df):
        if instr == "FROM":
            break
        if instr == "ARG":
            name, _, default = value.partition("=")
            out[name.strip()] = default.strip().strip('"')
    return out


def stages(df: DockerfileParser) -> list[list[Instruction]]:
    """Each stage's instructions, its FROM with the build arguments' defaults filled in (``${PYTHON_IMAGE}`` ->
    ``python:3.11-slim``), as a build without ``--build-arg`` sees it."""
    args = global_args(df)
    out: list[list[Instruction]] = []
    for instr, value in instructions(df):
        if instr == "FROM":
            out.append([])
            value = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)
        if out:
            out[-1].append((instr, value))
    return out


def copies(stage: list[Instruction]) -> list[tuple[list[str], str, dict[str, str]]]:
    """(sources, destination, flags) of each COPY in a stage."""
    out = []
    for instr, value in stage:
        if instr != "COPY":
            continue
        words = shlex.split(value)
        flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
        paths = [w for w in words if not w.startswith("--")]
        out.append((paths[:-1], paths[-1], flags))
    return out


def entrypoint(df: DockerfileParser) -> list[str]:
    return list(json.loads([v for i, v in stages(df)[-1] if i == "ENTRYPOINT"][-1]))


def dockerignore() -> list[tuple[bool, str]]:
    """(negated, pattern) lines of .dockerignore, in order."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rules.append((line.startswith("!"), line.lstrip("!").strip("/")))
    return rules


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ``**/`` spans any directories, ``*`` and ``?`` stay in one."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(rel: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent directory covers its files."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negated, pattern in rules:
        regex = _pattern_regex(pattern)
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            result = not negated
    return result


def image_app(df: DockerfileParser, dest_root: Path) -> Path:
    """Copy what the runtime stage COPYs from the build context to ``dest_root``; return the ``/app`` there."""
    rules = dockerignore()
    for srcs, dest, flags in copies(stages(df)[-1]):
        if "from" in flags:
            continue
        for src in srcs:
            src_path = ROOT / src.rstrip("/")
            target = dest_root / dest.lstrip("/").rstrip("/")
            for file in [src_path] if src_path.is_file() else sorted(src_path.rglob("*")):
                rel = file.relative_to(ROOT).as_posix()
                if file.is_dir() or ignored(rel, rules):
                    continue
                out = target / file.relative_to(src_path) if src_path.is_dir() else target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out)
    return dest_root / APP_DIR.lstrip("/")


def map_path(value: str, mounts: dict[str, Path]) -> str:
    """A container path (or a value starting with one) moved onto its local stand-in directory."""
    for container_dir, local_dir in mounts.items():
        if value == container_dir or value.startswith(container_dir + "/"):
            return str(local_dir) + value[len(container_dir) :]
    return value


def image_env(df: DockerfileParser, mounts: dict[str, Path]) -> dict[str, str]:
    """The host environment minus project/Airflow/OTel settings, plus the image's ENV mapped onto ``mounts``."""
    prefixes = ("BINANCE_", "AIRFLOW", "PYTHON", "OTEL_", "TRACEPARENT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    for key, value in df.envs.items():
        if key in ("PATH", "VIRTUAL_ENV"):
            continue  # the venv interpreter is called by absolute path
        env[key] = map_path(value, mounts)
    return env

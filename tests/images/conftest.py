"""Image tests: both Dockerfile targets built here (``make images``' script) and run with podman.

Each module sets ``pytestmark = MARKS``: marker ``images``, one xdist worker for them all (group ``images``) and a
long timeout, because the session builds the images once (stand-in bases first where no registry can be reached;
cached layers make later sessions take seconds) and that build counts against the first test to run.
"""

from __future__ import annotations

import pytest

from tests.images.podman import Images, build_images


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return build_images(tmp_path_factory.mktemp("images"))

"""The default config and pod template ship inside the package; the environment points elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from binance_extractor import config
from binance_extractor.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_package_resources_identical_to_the_repository_files():
    package = Path(config.__file__).resolve().parent / "resources"
    assert config.DEFAULT_CONFIG.parent == package and config.DEFAULT_POD_TEMPLATE.parent == package
    assert config.DEFAULT_CONFIG.read_bytes() == (ROOT / "include" / "config.yaml").read_bytes()
    assert config.DEFAULT_POD_TEMPLATE.read_bytes() == (ROOT / "k8s_pod_templates" / "extractor-pod.yaml").read_bytes()
    assert config.pod_template() == config.DEFAULT_POD_TEMPLATE


def test_config_env_var_points_at_another_file(monkeypatch, tmp_path):
    other = tmp_path / "mine.yaml"
    other.write_text("symbols: [ETHUSDT]\nkubernetes: {namespace: data, pool_slots: 2}\n")
    monkeypatch.setenv("BINANCE_EXTRACTOR_CONFIG", str(other))
    monkeypatch.delenv("BINANCE_SYMBOLS", raising=False)
    assert config.settings().symbols == ("ETHUSDT",)
    assert (config.namespace(), config.pool_slots(), config.service_account()) == ("data", 2, "binance-extractor")
    monkeypatch.setenv("BINANCE_API_POOL_SLOTS", "7")
    assert config.pool_slots() == 7
    monkeypatch.setenv("BINANCE_EXTRACTOR_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(InputError, match=r"^config file not found: .*missing\.yaml$"):
        config.settings()


def test_shipped_deployment_defaults():
    assert config.settings().kubernetes == {
        "namespace": "petrosa-apps",
        "service_account": "binance-extractor",
        "image": "binance-extractor:0.1.0",
        "pool_slots": 4,
    }

from __future__ import annotations

from pathlib import Path

import pytest

from vmaf_roi import config
from vmaf_roi.errors import ConfigError

# encode job configs (batch-*.yaml are batch files, tested in test_batch.py)
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
                 if not p.name.startswith("batch-"))


def test_defaults_validate():
    cfg = config.load()
    assert cfg == config.DEFAULTS and cfg is not config.DEFAULTS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config.load(path)


def test_default_yaml_documents_every_key():
    text = (Path(__file__).resolve().parents[1] / "configs" / "default.yaml").read_text()
    import yaml

    assert config._flatten(yaml.safe_load(text)).keys() == config._flatten(config.DEFAULTS).keys()


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("roi:\n  strenght: 3\n", r"config roi\.strenght: unknown key \(did you mean roi\.strength\?\)"),
        ("roi:\n  strength: abc\n", r"config roi\.strength: expected a number >= 0 <= 51, got 'abc'"),
        ("roi:\n  max_regions: 0\n", r"config roi\.max_regions: expected an integer >= 1"),
        ("saliency:\n  stride: 1.5\n", r"config saliency\.stride: expected an integer"),
        ("saliency:\n  scene_cut: 3\n", r"config saliency\.scene_cut: expected true or false"),
        ("roi: 3\n", r"config roi: expected a mapping"),
        ("rate_control:\n  mode: bitrate\n  value: fast\n", r"config rate_control\.value: expected a bitrate"),
        ("rate_control:\n  value: 99\n", r"config rate_control\.value: expected a crf number 0-63"),
        ("encoder_params:\n  aq-mode: [1, 2]\n", r"config encoder_params\.aq-mode: expected a scalar"),
        ("- just\n- a list\n", r"expected a mapping at the top level"),
        ("roi: {strength: 3\n", r"line \d+: not valid YAML"),
        ("encoder: !!python/object/apply:os.system ['true']\n", r"not valid YAML"),
    ],
)
def test_bad_configs_get_path_qualified_errors(tmp_path, yaml_text, message):
    p = tmp_path / "job.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        config.load(p)


def test_set_overrides():
    cfg = config.load(None, ["roi.strength=3.5", "encoder_params.aq-mode=2", "rate_control.value=2.5M",
                             "rate_control.mode=bitrate", "filters=scale=640:360"])
    assert cfg["roi"]["strength"] == 3.5 and cfg["encoder_params"] == {"aq-mode": 2}
    assert config.parse_bitrate(cfg["rate_control"]["value"]) == 2_500_000
    assert cfg["filters"] == "scale=640:360"
    with pytest.raises(ConfigError, match="did you mean roi.strength"):
        config.load(None, ["roi.strenght=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        config.load(None, ["roi.strength"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        config.load(tmp_path / "nope.yaml")

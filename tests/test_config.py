from __future__ import annotations

import copy
from pathlib import Path

import pytest

from vmaf_roi import config
from vmaf_roi.errors import ConfigError

# encode job configs (batch-*.yaml are batch files, tested in test_batch.py)
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
                 if not p.name.startswith("batch-"))


def test_defaults_validate():
    cfg = config.load()
    assert cfg is not config.DEFAULTS
    # "auto" becomes the encoder's own preset and crf; every other key is the default
    assert config.DEFAULTS["preset"] == "auto" and config.DEFAULTS["rate_control"]["value"] == "auto"
    assert config.DEFAULTS["saliency"]["stride"] == "auto"
    assert cfg["preset"] == "medium" and cfg["rate_control"]["value"] == 23 and cfg["saliency"]["stride"] == 4
    resolved = copy.deepcopy(config.DEFAULTS)
    resolved["preset"], resolved["rate_control"]["value"], resolved["saliency"]["stride"] = "medium", 23, 4
    assert cfg == resolved


@pytest.mark.parametrize("encoder, preset, crf, stride", [
    ("libx264", "medium", 23, 4), ("libx265", "medium", 28, 4), ("libsvtav1", 8, 35, 8), ("libvpx-vp9", None, 32, 4),
])
def test_each_encoder_gets_defaults_in_its_own_terms(encoder, preset, crf, stride):
    cfg = config.load(None, [f"encoder={encoder}"])
    assert cfg["preset"] == preset and cfg["rate_control"]["value"] == crf and cfg["saliency"]["stride"] == stride
    assert config.EncodeConfig.from_dict(cfg).saliency.stride == stride
    # an explicit value wins over auto
    assert config.load(None, [f"encoder={encoder}", "rate_control.value=30"])["rate_control"]["value"] == 30
    assert config.load(None, [f"encoder={encoder}", "saliency.stride=3"])["saliency"]["stride"] == 3
    # a batch's base config keeps auto until a job names the encoder
    assert config.load(None, [f"encoder={encoder}"], resolve_auto=False)["saliency"]["stride"] == "auto"


def test_presets_and_crf_ranges_are_checked_per_encoder():
    with pytest.raises(ConfigError, match=r"config preset: libsvtav1 presets are numbers 0\.\.13"):
        config.load(None, ["encoder=libsvtav1", "preset=medium"])
    with pytest.raises(ConfigError, match="libx264 presets are ultrafast"):
        config.load(None, ["preset=8"])
    with pytest.raises(ConfigError, match="number 1-63 for libsvtav1"):
        config.load(None, ["encoder=libsvtav1", "rate_control.value=0"])
    with pytest.raises(ConfigError, match="number 0-51 for libx264"):
        config.load(None, ["rate_control.value=55"])
    assert config.load(None, ["encoder=libsvtav1", "preset=12", "rate_control.value=55"])["preset"] == 12
    with pytest.raises(ConfigError, match="bitrate mode needs a bitrate"):
        config.load(None, ["rate_control.mode=bitrate"])


def test_a_base_config_keeps_auto_until_the_encoder_is_known(tmp_path):
    p = tmp_path / "base.yaml"
    p.write_text("roi: {strength: 3}\n")
    base = config.load(p, resolve_auto=False)
    assert base["preset"] == "auto"
    base["encoder"] = "libsvtav1"
    assert config.validate(base)["preset"] == 8


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
        ("rate_control:\n  value: 99\n", r"config rate_control\.value: expected a crf number 0-51 for libx264"),
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

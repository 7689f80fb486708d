"""Settings: overrides parse, one check() per type, saved settings read back safely."""

import json
from dataclasses import asdict, replace

import pytest

from dmsps.config import (
    ExpandConfig,
    RunConfig,
    ScribbleConfig,
    TrainConfig,
    apply_overrides,
    read_settings,
    refuse_other_settings,
)
from dmsps.errors import DmspsError
from dmsps.models.unet import ModelConfig, NetworkSettings
from dmsps.presets import preset


def test_loss_form_is_a_setting_and_bad_values_name_the_choices():
    cfg = apply_overrides(preset("acdc"), ["stage1.pl_loss=soft-ce", "stage1.rampup=0"])
    assert (cfg.stage1.pl_loss, cfg.stage1.rampup) == ("soft-ce", 0)
    cfg = apply_overrides(preset("acdc"), ["stage1.pl_loss=softmax2"])
    with pytest.raises(DmspsError, match="soft-ce, authors"):
        cfg.stage1.check()
    with pytest.raises(DmspsError, match=r"^stage1: pl_loss must be one of"):
        cfg.check()


def test_other_settings_are_refused_with_their_differences_but_free_ones_may_change():
    cfg = preset("demo")
    old = asdict(cfg)
    # Device, threads and logging do not change what is trained.
    moved = replace(cfg, stage1=replace(cfg.stage1, device="cpu", threads=3, log_interval=9))
    refuse_other_settings(old, asdict(moved), "run", "fix it")
    changed = replace(cfg, stage1=replace(cfg.stage1, lr=0.5), stage2=replace(cfg.stage2, seed=7))
    with pytest.raises(DmspsError) as err:
        refuse_other_settings(old, asdict(changed), "RUN: made with other settings", "use another")
    text = str(err.value)
    assert text.startswith("RUN: made with other settings (")
    assert f"stage1.lr: {cfg.stage1.lr} -> 0.5" in text
    assert f"stage2.seed: {cfg.stage2.seed} -> 7" in text
    assert text.endswith("); use another")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("expand.threshold=5", "expand: threshold must be in"),
        ("expand.target=soft", "expand: target must be one of ignore, dense"),
        ("scribbles.length=0", "scribbles: length must be in"),
        ("scribbles.every_nth_slice=0", "scribbles: every_nth_slice must be at least 1"),
        ("stage2.iterations=0", "stage2: iterations must be positive"),
        ("stage1.norm=group", "stage1: norm must be one of batch, instance"),
        ("stage1.network=unet3", "stage1: unknown network 'unet3' \\(choose from unet, "),
        ("stage1.method=nope", "stage1: unknown method 'nope' \\(choose from pce, dmsps"),
        ("stage1.patch_size=100", "stage1: patch_size .* must be a multiple of"),
        ("stage1.kernel_sizes=3x3,3x3", "stage1: kernel_sizes 3x3,3x3 needs 5 entries"),
        ("checkpoint=first", "checkpoint must be one of best, last"),
        ("stage2.init_from=x.pt", "stage2.init_from is set by the pipeline"),
    ],
)
def test_one_check_per_settings_type_names_the_section(override, message):
    """RunConfig.check() is what run, compare, demo and plan call; the same section
    checks back train (TrainConfig.check) and expand (ExpandConfig.check)."""
    cfg = apply_overrides(preset("acdc"), [override])
    with pytest.raises(DmspsError, match=message):
        cfg.check()


def test_each_section_checks_on_its_own():
    with pytest.raises(DmspsError, match=r"^threshold must be in"):
        ExpandConfig(threshold=0).check()
    with pytest.raises(DmspsError, match=r"^length must be in"):
        ScribbleConfig(length=2).check()
    with pytest.raises(DmspsError, match=r"^batch_size must be positive"):
        TrainConfig(batch_size=0).check()
    ExpandConfig().check()
    ScribbleConfig().check()
    RunConfig().check()


def test_network_settings_are_defined_once_for_training_and_checkpoints():
    """TrainConfig and ModelConfig inherit the same fields, with one default marker."""
    names = {f for f in NetworkSettings.__dataclass_fields__}
    assert names <= set(TrainConfig.__dataclass_fields__)
    assert names <= set(ModelConfig.__dataclass_fields__)
    train = TrainConfig(features=[8, 16, 32], kernel_sizes=[[3, 3]] * 3)
    model = ModelConfig(**train.network_settings(), in_channels=2, num_classes=3)
    assert train.encoder_dropout == []  # "the default", as in ModelConfig's input
    assert model.encoder_dropout == [0.05, 0.1, 0.2]  # resolved where the model is built
    assert model.kernels == [(3, 3)] * 3


def test_per_level_sizes_parse_from_the_command_line():
    cfg = apply_overrides(
        preset("acdc-3d"),
        [
            "stage1.kernel_sizes=1x3x3,1x3x3,3x3x3,3x3x3,3x3x3",
            "stage1.pool_strides=1x2x2 1x2x2 2x2x2 2x2x2",
            "stage1.patch_size=16,96,96",
        ],
    )
    assert cfg.stage1.kernel_sizes[0] == [1, 3, 3]
    assert cfg.stage1.pool_sizes == [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert cfg.stage1.multiples == (4, 16, 16)
    cfg.check()


def _saved(tmp_path, data) -> str:
    path = tmp_path / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: [1, 2], "the settings must be an object"),
        (lambda d: {**d, "stage3": {}}, "unknown setting 'stage3'"),
        (lambda d: {**d, "stage1": {**d["stage1"], "lr": "fast"}}, "stage1.lr must be float"),
        (lambda d: {**d, "stage1": {**d["stage1"], "iterations": 1.5}}, "must be int"),
        (lambda d: {**d, "stage1": {**d["stage1"], "features": 16}}, "must be a list of int"),
        (lambda d: {**d, "expand": {**d["expand"], "threshold": 9}}, "expand: threshold must"),
        (lambda d: {**d, "checkpoint": True}, "checkpoint must be str"),
    ],
)
def test_a_corrupt_or_hand_edited_config_is_one_line_naming_the_file(tmp_path, edit, message):
    path = _saved(tmp_path, edit(asdict(preset("demo"))))
    with pytest.raises(DmspsError) as err:
        read_settings(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert message.split(".*")[0] in text or message in text


def test_settings_added_since_a_file_was_written_take_their_defaults(tmp_path):
    data = asdict(preset("demo"))
    del data["stage1"]["kernel_sizes"], data["expand"]["aux_dropout"], data["largest_component"]
    cfg = read_settings(_saved(tmp_path, data))
    assert cfg.stage1.kernel_sizes == [] and cfg.expand.aux_dropout is False
    assert asdict(cfg) == asdict(preset("demo"))

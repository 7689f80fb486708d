"""Presets are valid and say what they claim; loss-form settings parse and are checked."""

import pytest

from dmsps.config import PRESET_HELP, PRESETS, apply_overrides, preset
from dmsps.errors import DmspsError
from dmsps.training.trainer import validate_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_documented(name):
    cfg = preset(name)
    assert cfg.preset == name
    validate_config(cfg.stage1)
    validate_config(cfg.stage2)
    assert name in PRESET_HELP


def test_acdc_authors_follows_the_original_scripts():
    cfg = preset("acdc-authors")
    for stage in (cfg.stage1, cfg.stage2):
        assert stage.pl_loss == "authors"
        assert stage.rampup == 0
        assert (stage.optimizer, stage.lr, stage.schedule) == ("sgd", 0.01, "auto")  # auto: poly
    assert cfg.stage2.iterations == 30000
    assert (cfg.expand.threshold, cfg.expand.target) == (0.1, "dense")
    # Our own presets keep the intended loss.
    assert preset("acdc").stage1.pl_loss == "soft-ce"


def test_loss_form_is_a_setting_and_bad_values_name_the_choices():
    cfg = apply_overrides(preset("acdc"), ["stage1.pl_loss=authors", "stage1.rampup=0"])
    assert (cfg.stage1.pl_loss, cfg.stage1.rampup) == ("authors", 0)
    cfg = apply_overrides(preset("acdc"), ["stage1.pl_loss=softmax2"])
    with pytest.raises(DmspsError, match="soft-ce, authors"):
        validate_config(cfg.stage1)

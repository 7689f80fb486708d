"""The planner's rules on fingerprints of ACDC-, WORD- and BraTS-like data (no images)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from dmsps.errors import DmspsError
from dmsps.planning.fingerprint import ChannelStats, Fingerprint
from dmsps.planning.planner import MIN_STAGE1_ITERATIONS, plan, topology
from dmsps.presets import preset


def _fingerprint(spacing, shape, channels, norms, fractions, p005=-100.0, p995=250.0):
    # Ten cases around the given median, so the medians are the given values.
    jitter = [0.9, 0.95, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.05, 1.1]
    return Fingerprint(
        name="test",
        cases=10,
        spacings=[list(spacing) for _ in jitter],
        shapes=[[round(n * j) for n in shape] for j in jitter],
        channels=[ChannelStats(c, 0.0, 1.0, p005, p995) for c in channels],
        class_names=["background", *[f"c{i}" for i in range(1, len(fractions))]],
        class_fractions=list(fractions),
        scribble_density=0.01,
        scribbled_slices=0.9,
        normalization=list(norms),
    )


ACDC = _fingerprint([10, 1.5, 1.5], [10, 230, 230], ["MRI"], ["zscore"], [0.9, 0.03, 0.04, 0.03])
WORD = _fingerprint(
    [3, 0.7, 0.7],
    [200, 512, 512],
    ["CT"],
    ["ct-window:-150:250"],
    [0.9, 0.05, 0.01, 0.01, 0.01, 0.02, 0.001, 0.003],
    p005=-96.0,
    p995=248.0,
)
BRATS = _fingerprint(
    [1, 1, 1], [140, 170, 140], ["t1", "t1ce", "t2", "flair"], ["nonzero-zscore:99.9"] * 4,
    [0.95, 0.01, 0.04],
)  # fmt: skip


def fixed(seconds):
    return lambda cfg: seconds


def test_thick_slices_get_in_plane_kernels_until_the_spacing_catches_up():
    topo = topology([10.0, 3.0, 3.0], [10, 128, 112])
    assert topo.kernel_sizes == [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    # Z pooled once (10 -> 5), never below MIN_FEATURE voxels; in-plane four times.
    assert topo.pool_strides == [[1, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]]
    assert topo.multiples == [2, 16, 16]
    iso = topology([1.0, 1.0, 1.0], [80, 96, 96])
    assert iso.kernel_sizes == [[3, 3, 3]] * 5 and iso.pool_strides == [[2, 2, 2]] * 4
    # 1 mm slices under 0.2 mm pixels (a ratio of 5): two levels of 1x3x3 first (5,
    # then 2.5), 3x3x3 once the ratio is down to 1.25.
    fine = topology([1.0, 0.2, 0.2], [32, 256, 256])
    assert fine.kernel_sizes[:3] == [[1, 3, 3], [1, 3, 3], [3, 3, 3]]
    assert fine.pool_strides[:3] == [[1, 2, 2], [1, 2, 2], [2, 2, 2]]
    # Too small to pool any axis: a one-level network.
    assert topology([1.0, 1.0, 1.0], [6, 6, 6]).pool_strides == []


def test_acdc_like_is_2d_unless_asked_and_its_3d_plan_is_anisotropic():
    assert plan(ACDC, "cpu-1h", step_seconds=fixed(1.0)).stage1.spatial_dims == 2
    s1 = plan(ACDC, "cpu-1h", dims=3, step_seconds=fixed(1.0)).stage1
    assert s1.spatial_dims == 3
    assert s1.target_spacing == [10.0, 2.695, 2.695]  # the median FOV in 128 voxels
    # Slabs of 4 slices, 6 a step (the 2D plan's 24 slices), the network planned for
    # the whole 10-slice stack: Z pooled once, so 4 is a multiple of the network.
    assert s1.patch_size == [4, 128, 128]
    assert s1.kernel_sizes[0] == [1, 3, 3] and s1.pool_strides[0] == [1, 2, 2]
    assert s1.kernel_sizes[1] == [3, 3, 3] and s1.pool_strides[1] == [2, 2, 2]
    assert (s1.norm, s1.batch_size, s1.augment) == ("batch", 6, True)
    assert s1.normalization == ["zscore"]


def test_only_short_stacks_of_thick_slices_are_cut_into_slabs():
    # The same thick slices in a long stack (and isotropic data) keep their whole-stack
    # or budget-sized patch and the 3D batch.
    long = _fingerprint([10, 1.5, 1.5], [40, 230, 230], ["MRI"], ["zscore"], [0.9, 0.1])
    s1 = plan(long, "cpu-1h", step_seconds=fixed(1.0)).stage1
    assert s1.spatial_dims == 3 and s1.patch_size[0] > 4 and s1.batch_size == 2
    assert plan(BRATS, "cpu-1h", step_seconds=fixed(1.0)).stage1.batch_size == 2
    # A stack already as thin as a slab is not cut further.
    thin = _fingerprint([10, 1.5, 1.5], [4, 230, 230], ["MRI"], ["zscore"], [0.9, 0.1])
    s1 = plan(thin, "cpu-1h", dims=3, step_seconds=fixed(1.0)).stage1
    assert s1.patch_size[0] == 4 and s1.batch_size == 2


def test_word_like_ct_plan():
    s1 = plan(WORD, "cpu-1h", step_seconds=fixed(1.0)).stage1
    assert s1.spatial_dims == 3
    assert s1.target_spacing == [5.315, 4.96, 4.96]
    assert s1.patch_size == [64, 48, 48]
    assert s1.kernel_sizes == [[3, 3, 3]] * 5
    assert s1.pool_strides == [[2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 1, 1]]
    # CT: the window of the labelled voxels' HU, no flips (organs are lateralised), and
    # centring on a scribbled class first (0.1 % of the voxels is gallbladder-sized).
    assert s1.normalization == ["ct-window:-100:250"]
    assert (s1.augment, s1.centring) == (False, "class")
    paper = plan(WORD, "paper").stage1
    assert paper.target_spacing == [3.0, 0.7, 0.7] and paper.iterations == 60000
    assert paper.kernel_sizes[:3] == [[1, 3, 3], [1, 3, 3], [3, 3, 3]]
    assert paper.optimizer == "sgd" and paper.lr == 0.01


def test_brats_like_four_channel_plan():
    cfg = plan(BRATS, "cpu-1h", step_seconds=fixed(1.0))
    s1 = cfg.stage1
    assert s1.target_spacing == [1.768, 1.768, 1.768]
    assert s1.patch_size == [48, 64, 48]
    assert s1.normalization == ["nonzero-zscore:99.9"] * 4
    assert s1.augment and s1.centring == "voxel"
    assert plan(BRATS, "gpu-1h", step_seconds=fixed(1.0)).stage1.patch_size == [96, 112, 96]


def test_iterations_follow_the_measured_step_time():
    cfg = plan(ACDC, "cpu-1h", dims=3, step_seconds=fixed(1.0))
    # 3600 s, 10 % kept for validation, 80 % of the rest for stage 1, in steps of 50.
    assert (cfg.stage1.iterations, cfg.stage2.iterations) == (2550, 600)
    assert cfg.stage1.rampup == 850 and cfg.stage2.rampup == 0
    assert cfg.stage1.val_interval == 425
    assert cfg.stage1.features == [16, 32, 64, 128, 256]
    assert cfg.expand.threshold == 0.3


def test_a_slow_device_trains_half_widths_rather_than_a_few_hundred_steps():
    seen = []

    def step(cfg):
        seen.append(list(cfg.features))
        return 4.0 if cfg.features[0] == 16 else 1.2

    cfg = plan(ACDC, "cpu-1h", dims=3, step_seconds=step)
    assert seen == [[16, 32, 64, 128, 256], [8, 16, 32, 64, 128]]
    assert cfg.stage1.features == [8, 16, 32, 64, 128]
    assert cfg.stage1.iterations == 2150 >= MIN_STAGE1_ITERATIONS


def test_a_plan_is_a_settings_file_that_runs_as_a_preset(tmp_path):
    cfg = plan(WORD, "cpu-1h", step_seconds=fixed(0.5))
    cfg.check()
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(asdict(cfg)))
    assert asdict(preset(path)) == asdict(cfg)


def test_a_budget_of_another_time():
    quarter = plan(ACDC, "cpu-15m", dims=3, step_seconds=fixed(0.25))
    assert (
        quarter.stage1.iterations
        == plan(ACDC, "cpu-1h", dims=3, step_seconds=fixed(1.0)).stage1.iterations
    )
    assert plan(ACDC, "gpu-0.5h", dims=3, step_seconds=fixed(0.5)).stage1.patch_size[1] == 192


def test_bad_budget_and_dims_are_one_line_errors():
    with pytest.raises(DmspsError, match="unknown budget 'cpu'"):
        plan(ACDC, "cpu")
    with pytest.raises(DmspsError, match="unknown budget 'cpu-0m'"):
        plan(ACDC, "cpu-0m")
    with pytest.raises(DmspsError, match="--dims must be 2 or 3"):
        plan(ACDC, "cpu-1h", dims=4, step_seconds=fixed(1.0))
    with pytest.raises(DmspsError, match="needs a measured step time"):
        plan(ACDC, "cpu-1h", dims=3)


def test_a_budget_too_short_for_the_whole_case_patch_plans_a_smaller_one():
    """Step time in proportion to patch voxels (and a third at half widths): at a quarter
    hour the whole-case patch would leave a few hundred steps, so the patch limit is sized
    for MIN_STAGE1_ITERATIONS, the spacing coarsened with it, and the step timed again."""
    demo_like = _fingerprint([5, 3.5, 3.5], [40, 60, 90], ["CT"], ["ct-window:-150:250"],
                             [0.9, 0.05, 0.02, 0.03])  # fmt: skip
    seen = []

    def step(cfg):
        seen.append(list(cfg.patch_size))
        voxels = cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2] * cfg.batch_size
        return voxels * 2e-5 * (1.0 if cfg.features[0] == 16 else 1 / 3)

    short = plan(demo_like, "cpu-15m", step_seconds=step)
    long = plan(demo_like, "cpu-1h", step_seconds=fixed(0.1))
    whole, small = seen[0], short.stage1.patch_size
    assert len(seen) == 3 and seen[2] == small  # timed: full, half widths, smaller patch
    levels = len(short.stage1.kernel_sizes)  # a small patch may have fewer levels
    assert short.stage1.features == [8, 16, 32, 64, 128][:levels]
    assert small[0] * small[1] * small[2] < whole[0] * whole[1] * whole[2] / 3
    assert all(a >= b for a, b in zip(short.stage1.target_spacing, [5, 3.5, 3.5], strict=True))
    assert short.stage1.target_spacing != [5, 3.5, 3.5]  # coarsened with the patch
    assert short.stage1.iterations >= 0.8 * MIN_STAGE1_ITERATIONS
    short.check()
    # With time to spare the whole-case patch stays.
    assert long.stage1.patch_size == whole

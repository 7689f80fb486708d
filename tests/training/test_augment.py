import math

import torch

from dmsps.training.augment import apply_affines, augment_batch, random_affines

IGN = 4


def _rot(deg: float) -> torch.Tensor:
    t = math.radians(deg)
    return torch.tensor([[[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0]]])


def test_quarter_turn_is_exact_for_image_and_labels():
    img = torch.arange(16.0).view(1, 1, 4, 4)
    lab = torch.arange(16).view(1, 4, 4) % 4
    m = _rot(90).round()  # exact quarter turn
    out, (lab_out,) = apply_affines(m, img, [lab], [IGN])
    # affine_grid maps output -> input: the content rotates by -90 degrees in (x, y)
    expected = torch.rot90(img, k=1, dims=(2, 3))
    assert torch.allclose(out, expected, atol=1e-5) or torch.allclose(
        out, torch.rot90(img, k=-1, dims=(2, 3)), atol=1e-5
    )
    assert set(lab_out.unique().tolist()) <= {0, 1, 2, 3}  # nothing rotated in from outside


def test_free_rotation_fills_scribble_border_with_ignore():
    img = torch.ones(1, 1, 16, 16)
    scrib = torch.zeros(1, 16, 16, dtype=torch.long)
    _, (out,) = apply_affines(_rot(20), img, [scrib], [IGN])
    assert (out == IGN).any()  # corners come from outside the slice
    assert out[0, 8, 8] == 0  # centre keeps its label
    assert set(out.unique().tolist()) == {0, IGN}


def test_random_affines_follow_the_recipe():
    gen = torch.Generator().manual_seed(0)
    mats = random_affines(4000, gen)
    lin = mats[:, :, :2]
    det = torch.linalg.det(lin)
    quarter = (lin.abs() - lin.abs().round()).abs().amax((1, 2)) < 1e-6
    # rot90+flip (p 0.5) are exact with det -1; identity (p 0.25) has det +1
    flipped = quarter & (det < 0)
    assert abs(flipped.float().mean().item() - 0.5) < 0.03
    angles = torch.rad2deg(torch.atan2(lin[:, 1, 0], lin[:, 0, 0]))
    free = ~quarter
    assert angles[free].abs().max() <= 20.0 + 1e-4
    assert abs(free.float().mean().item() - 0.25) < 0.03


def test_augment_batch_is_deterministic_per_generator():
    img = torch.randn(6, 1, 20, 20)
    scrib = torch.randint(0, 5, (6, 20, 20))
    a = augment_batch(img, [scrib], [IGN], torch.Generator().manual_seed(7))
    b = augment_batch(img, [scrib], [IGN], torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1][0], b[1][0])


def test_3d_affines_rotate_in_plane_and_flip_axes():
    from dmsps.training.augment import random_affines_3d

    gen = torch.Generator().manual_seed(1)
    mats = random_affines_3d(4000, gen)
    assert mats.shape == (4000, 3, 4) and (mats[:, :, 3] == 0).all()  # no translation
    # the z axis never mixes with the plane: only a flip
    assert (mats[:, 2, :2] == 0).all() and (mats[:, :2, 2] == 0).all()
    assert set(mats[:, 2, 2].unique().tolist()) == {-1.0, 1.0}
    assert abs((mats[:, 2, 2] < 0).float().mean().item() - 0.5) < 0.03


def test_3d_flip_of_z_is_exact_and_labels_follow_the_image():
    img = torch.arange(2 * 4 * 4.0).view(1, 1, 2, 4, 4)
    lab = (torch.arange(2 * 4 * 4).view(1, 2, 4, 4) % 3).long()
    flip_z = torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, -1.0, 0]]])
    out, (lab_out,) = apply_affines(flip_z, img, [lab], [IGN])
    assert torch.allclose(out, img.flip(2), atol=1e-5)
    assert torch.equal(lab_out, lab.flip(1))
    a = augment_batch(
        torch.randn(3, 2, 4, 8, 8),
        [lab.repeat(3, 2, 2, 2)[:, :4, :8, :8]],
        [IGN],
        torch.Generator().manual_seed(3),
    )
    assert a[0].shape == (3, 2, 4, 8, 8) and a[1][0].shape == (3, 4, 8, 8)

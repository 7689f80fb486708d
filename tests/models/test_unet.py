import pytest
import torch

from dmsps.errors import DmspsError
from dmsps.models.unet import DualDecoderNet, ModelConfig, count_parameters


def test_default_parameter_count_matches_paper_network():
    assert count_parameters(DualDecoderNet(ModelConfig())) == 2_447_064


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 50, 37), (3, 1, 17, 100)])
def test_any_input_size_gives_same_output_size(shape):
    model = DualDecoderNet(ModelConfig(features=[4, 8, 16, 32, 64])).eval()
    main, aux = model(torch.randn(shape))
    assert main.shape == (shape[0], 4, *shape[2:])
    assert aux.shape == main.shape


def test_multi_channel_input_and_width_depth_configurable():
    cfg = ModelConfig(in_channels=3, num_classes=5, features=[4, 8, 16], encoder_dropout=[0, 0, 0])
    model = DualDecoderNet(cfg).eval()
    out = model(torch.randn(2, 3, 24, 24), aux=False)
    assert out.shape == (2, 5, 24, 24)


def test_aux_decoder_gets_feature_dropout_only_in_training():
    torch.manual_seed(0)
    model = DualDecoderNet(ModelConfig(features=[4, 8, 16, 32, 64]))
    # Copy main decoder weights into aux: any difference must come from feature dropout.
    model.aux.load_state_dict(model.main.state_dict())
    for m in model.modules():  # silence ordinary dropout and BN batch statistics
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    x = torch.randn(2, 1, 32, 32)
    model.eval()
    main, aux = model(x)
    assert torch.allclose(main, aux)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    main, aux = model(x)
    assert not torch.allclose(main, aux)


def test_3d_variant_builds_and_runs():
    model = DualDecoderNet(
        ModelConfig(
            spatial_dims=3, in_channels=4, features=[4, 8, 16], encoder_dropout=[0.0, 0.1, 0.2]
        )
    ).eval()
    main, _ = model(torch.randn(1, 4, 12, 20, 20))
    assert main.shape == (1, 4, 12, 20, 20)


def test_thick_slices_pool_z_only_at_the_deepest_levels():
    cfg = ModelConfig(spatial_dims=3, features=[4, 8, 16, 32], z_pooling=1)
    assert cfg.pool_sizes == [(1, 2, 2), (1, 2, 2), (2, 2, 2)] and cfg.multiples == (2, 8, 8)
    model = DualDecoderNet(cfg).eval()
    main, aux = model(torch.randn(1, 1, 6, 24, 16))
    assert main.shape == aux.shape == (1, 4, 6, 24, 16)
    assert ModelConfig(spatial_dims=3, features=[4, 8, 16]).multiples == (4, 4, 4)


def test_authors_3d_variant_options():
    """UNet_CCT_dp_3D: InstanceNorm3d without affine, ReLU, upsample-then-concatenate
    without a 1x1 reduction, 1x1x1 output convolution."""
    cfg = ModelConfig(
        spatial_dims=3,
        in_channels=4,
        num_classes=3,
        norm="instance",
        activation="relu",
        join="concat",
        head_kernel=1,
    )
    model = DualDecoderNet(cfg)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.InstanceNorm3d)]
    assert norms and all(not n.affine for n in norms)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    assert all(up.reduce is None for up in model.main.ups)
    # first up-step: 256 upsampled channels + 128 skip channels into the conv block
    assert model.main.ups[0].block[0].in_channels == 256 + 128
    assert model.main.head.kernel_size == (1, 1, 1)
    main, _ = model.eval()(torch.randn(1, 4, 16, 32, 32))
    assert main.shape == (1, 3, 16, 32, 32)


def _weight_grad(conv, x, g, autocast: bool):
    conv.weight.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = conv(x)
    y.float().backward(g)
    return y, conv.weight.grad.clone()


@pytest.mark.parametrize("depth", [2, 3])
def test_conv3d_weight_gradient_in_cpu_bf16_matches_fp32(depth):
    # PyTorch's CPU bf16 weight gradient of a 3x3x3 convolution is garbage (1e37, NaN)
    # for inputs two voxels deep on AVX-512-BF16 CPUs; dmsps's Conv3d computes those in
    # fp32. Depth 3 takes the ordinary bf16 path: both must agree with fp32 to bf16
    # rounding.
    from dmsps.models.unet import Conv3d

    torch.manual_seed(0)
    conv = Conv3d(32, 16, 3, padding=1)
    x = torch.randn(4, 32, depth, 6, 6)
    g = torch.randn(4, 16, depth, 6, 6)
    y16, w16 = _weight_grad(conv, x, g, autocast=True)
    y32, w32 = _weight_grad(conv, x, g, autocast=False)
    assert y16.dtype == torch.bfloat16  # the layer's output type as autocast gives it
    assert torch.isfinite(w16).all()
    assert (w16 - w32).abs().max() <= 0.02 * w32.abs().max()
    assert (y16.float() - y32).abs().max() <= 0.02 * y32.abs().max()


def test_3d_network_builds_its_3x3x3_convolutions_with_the_bf16_guard():
    from dmsps.models.unet import Conv3d

    model = DualDecoderNet(ModelConfig(spatial_dims=3, features=[4, 8, 16]))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    big = [m for m in convs if m.kernel_size == (3, 3, 3)]
    assert big and all(isinstance(m, Conv3d) for m in big)


def test_per_level_kernels_and_strides_in_both_decoders():
    """Anisotropic levels (nnU-Net): 1x3x3 kernels and 1x2x2 pooling first, then 3x3x3."""
    cfg = ModelConfig(
        spatial_dims=3,
        features=[4, 8, 16],
        kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3]],
        pool_strides=[[1, 2, 2], [2, 2, 2]],
    )
    assert cfg.multiples == (2, 4, 4)
    model = DualDecoderNet(cfg)
    for part in (model.encoder.blocks[0], model.main.ups[-1].block, model.aux.ups[-1].block):
        assert part[0].kernel_size == (1, 3, 3) and part[0].padding == (0, 1, 1)
    for part in (model.encoder.blocks[1], model.main.ups[0].block, model.aux.ups[0].block):
        assert part[0].kernel_size == (3, 3, 3)
    assert model.main.head.kernel_size == (1, 3, 3)  # head_kernel 3 follows level 0
    main, aux = model.eval()(torch.randn(1, 1, 5, 13, 11))  # padded to (6, 16, 12) inside
    assert main.shape == aux.shape == (1, 4, 5, 13, 11)
    # What a checkpoint stores rebuilds the same network.
    again = DualDecoderNet(ModelConfig.from_dict(cfg.to_dict()))
    again.load_state_dict(model.state_dict())
    assert again.cfg.kernels == cfg.kernels and again.cfg.pool_sizes == cfg.pool_sizes


def test_bad_kernels_or_strides_are_refused():
    with pytest.raises(DmspsError, match="kernel_sizes 3x3x3 needs 3 entries"):
        ModelConfig(spatial_dims=3, features=[4, 8, 16], kernel_sizes=[[3, 3, 3]]).check()
    with pytest.raises(DmspsError, match="pool_strides 2x2x3,2x2x2 needs 2 entries"):
        ModelConfig(
            spatial_dims=3, features=[4, 8, 16], pool_strides=[[2, 2, 3], [2, 2, 2]]
        ).check()

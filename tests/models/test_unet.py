import pytest
import torch

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

"""The other dual-decoder networks (models/backbones.py): attention U-Net and UNet++.

Every network must honour DualDecoderNet's contract (any input size, (main, aux) logits,
aux=False, feature dropout for aux only in training, BatchNorm folding, checkpoints),
in 2D and 3D; the parameter counts pin the architectures.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dmsps.errors import DmspsError
from dmsps.models.backbones import AttentionGate, AttentionUNet, NestedDecoder, UNetPlusPlus
from dmsps.models.checkpoint import load_checkpoint, model_from_checkpoint
from dmsps.models.fold import fold_batchnorm
from dmsps.models.networks import NETWORKS, build_model
from dmsps.models.unet import DualDecoderNet, ModelConfig, count_parameters

NAMES = ["attention-unet", "unetpp"]
SMALL = [4, 8, 16, 32, 64]

#: (spatial_dims, small settings, input sizes: multiples of the network's and not)
CASES = {
    2: (dict(features=SMALL), [(2, 1, 64, 64), (1, 1, 50, 37), (3, 1, 17, 100)]),
    3: (
        dict(features=[4, 8, 16, 32], z_pooling=1),  # multiples (2, 8, 8)
        [(1, 1, 4, 16, 24), (1, 1, 5, 19, 13)],
    ),
}

#: Exact counts at the default widths [16, 32, 64, 128, 256], 1 channel, 4 classes (the
#: plain "unet": 2,447,064 in 2D, 7,154,424 in 3D).
PARAMETERS = {
    ("attention-unet", 2): 2_578_112,
    ("attention-unet", 3): 7_372_512,
    ("unetpp", 2): 3_007_096,
    ("unetpp", 3): 8_774_296,
}

PARAMS = [(name, dims) for name in NAMES for dims in (2, 3)]
IDS = [f"{name}-{dims}d" for name, dims in PARAMS]


def _model(name: str, dims: int, **overrides) -> nn.Module:
    torch.manual_seed(0)
    settings = dict(CASES[dims][0], spatial_dims=dims, network=name, **overrides)
    return build_model(ModelConfig(**settings))


def _trained_like(model: nn.Module) -> nn.Module:
    """Running statistics and affine parameters far from the 0/1 defaults, so folding
    and checkpoints have something to get wrong."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.3, 3)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model


def _input(dims: int, which: int = 0) -> torch.Tensor:
    return torch.randn(CASES[dims][1][which])


def test_networks_are_collected_by_name():
    assert {
        "unet": DualDecoderNet,
        "attention-unet": AttentionUNet,
        "unetpp": UNetPlusPlus,
    } == NETWORKS
    assert isinstance(build_model(ModelConfig(network="attention-unet")), AttentionUNet)
    assert isinstance(build_model(ModelConfig(network="unetpp")), UNetPlusPlus)
    with pytest.raises(DmspsError, match="available: attention-unet, unet, unetpp"):
        build_model(ModelConfig(network="unet3+"))


@pytest.mark.parametrize(("name", "dims"), PARAMS, ids=IDS)
def test_default_parameter_count(name, dims):
    model = build_model(ModelConfig(network=name, spatial_dims=dims))
    assert count_parameters(model) == PARAMETERS[(name, dims)]


@pytest.mark.parametrize(("name", "dims"), PARAMS, ids=IDS)
def test_any_input_size_gives_same_output_size(name, dims):
    model = _model(name, dims).eval()
    for shape in CASES[dims][1]:
        with torch.no_grad():
            main, aux = model(torch.randn(shape))
        assert main.shape == aux.shape == (shape[0], 4, *shape[2:])


@pytest.mark.parametrize(("name", "dims"), PARAMS, ids=IDS)
def test_both_decoders_and_the_encoder_get_gradients(name, dims):
    model = _model(name, dims).train()
    main, aux = model(_input(dims))
    weights = torch.randn(main.shape, generator=torch.Generator().manual_seed(1))
    ((main * weights).sum() + (aux * weights).sum()).backward()
    for part in ("encoder", "main", "aux"):
        for key, p in getattr(model, part).named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{part}.{key}"


@pytest.mark.parametrize(("name", "dims"), PARAMS, ids=IDS)
def test_main_only_equals_the_main_of_the_full_forward(name, dims):
    model = _trained_like(_model(name, dims)).eval()
    x = _input(dims, 1)
    with torch.no_grad():
        main, aux = model(x)
        alone = model(x, aux=False)
    assert isinstance(alone, torch.Tensor)
    assert torch.equal(alone, main)
    assert not torch.allclose(main, aux)  # two decoders with their own weights
    padded = torch.randn(1, 1, *[2 * m for m in model.multiples])
    with torch.no_grad():
        assert torch.allclose(model.main_logits(padded), model(padded, aux=False))


@pytest.mark.parametrize(("name", "dims"), PARAMS, ids=IDS)
def test_aux_decoder_gets_feature_dropout_only_in_training(name, dims):
    model = _model(name, dims)
    model.aux.load_state_dict(model.main.state_dict())
    for m in model.modules():  # silence ordinary dropout
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    x = _input(dims)
    with torch.no_grad():
        main, aux = model.eval()(x)
        assert torch.allclose(main, aux)
        model.train()
        for m in model.modules():  # no batch statistics: only feature dropout differs
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        main, aux = model(x)
    assert not torch.allclose(main, aux)


@pytest.mark.parametrize(("name", "dims"), PARAMS, ids=IDS)
def test_batchnorm_folding_keeps_the_outputs(name, dims):
    model = _trained_like(_model(name, dims)).train()
    folded = fold_batchnorm(model)
    left = [m for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert not left, f"{len(left)} BatchNorm layers left unfolded"
    x = _input(dims, 1)
    with torch.no_grad():
        ref = model.eval()(x)
        out = folded(x)
    for a, b in zip(ref, out, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), (a - b).abs().max()


@pytest.mark.parametrize(("name", "dims"), PARAMS, ids=IDS)
def test_checkpoint_round_trip(name, dims, tmp_path):
    model = _trained_like(_model(name, dims)).eval()
    path = tmp_path / "model.pt"
    torch.save({"model": model.state_dict(), "meta": {"model": model.cfg.to_dict()}}, path)
    ckpt = load_checkpoint(path)
    again = model_from_checkpoint(ckpt, path).eval()  # rebuilt from the network's name
    assert type(again) is type(model)
    plain = _model(name, dims)
    plain.load_state_dict(torch.load(path, weights_only=True)["model"])
    x = _input(dims, 1)
    with torch.no_grad():
        ref = model(x)
        for other in (again, plain.eval()):
            for a, b in zip(ref, other(x), strict=True):
                assert torch.equal(a, b)


def test_weights_of_one_network_do_not_load_into_another():
    state = _model("unetpp", 2).state_dict()
    with pytest.raises(RuntimeError):
        _model("attention-unet", 2).load_state_dict(state)


@pytest.mark.parametrize("name", NAMES)
def test_authors_3d_options_and_anisotropic_pooling(name):
    """Instance norm, ReLU, upsample-and-concatenate, 1x1x1 head; Z pooled once."""
    model = _model(name, 3, norm="instance", activation="relu", join="concat", head_kernel=1)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    assert model.main.head.kernel_size == (1, 1, 1)
    with torch.no_grad():
        main, aux = model.eval()(torch.randn(1, 1, 6, 24, 16))
    assert main.shape == aux.shape == (1, 4, 6, 24, 16)


def test_attention_gates_weight_every_skip_by_the_coarser_features():
    model = _model("attention-unet", 2)
    gates = [m for m in model.main.modules() if isinstance(m, AttentionGate)]
    assert len(gates) == len(SMALL) - 1
    gate = model.main.ups[0].gate  # deepest step: 64-wide gate, 32-wide skip
    skip, coarse = torch.randn(2, 32, 8, 8), torch.randn(2, 64, 4, 4)
    with torch.no_grad():
        alpha = gate.coefficients(skip, coarse)
        assert alpha.shape == (2, 1, 8, 8)
        assert alpha.min() > 0 and alpha.max() < 1
        assert torch.allclose(gate(skip, coarse), skip * alpha)
        other = gate.coefficients(skip, torch.randn(2, 64, 4, 4))
    assert not torch.allclose(alpha, other)  # the gating signal steers it


def test_unetpp_nests_dense_skip_pathways():
    levels = len(SMALL)
    decoder = _model("unetpp", 2).main
    assert isinstance(decoder, NestedDecoder)
    assert [len(c) for c in decoder.columns] == list(range(levels - 1, 0, -1))  # 4, 3, 2, 1
    for j, column in enumerate(decoder.columns, start=1):
        for i, node in enumerate(column):
            # X(i, j) sees the j earlier nodes of level i and the reduced node below
            assert node.block[0].in_channels == (j + 1) * SMALL[i], (i, j)
            assert node.block[-3].out_channels == SMALL[i]
    concat = _model("unetpp", 2, join="concat").main
    assert concat.columns[2][1].block[0].in_channels == 3 * SMALL[1] + SMALL[2]

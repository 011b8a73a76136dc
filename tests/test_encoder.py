"""The VGG19 encoder: embedded weights dequantised to the right layout, layer naming, pooling, loading."""
import pytest
import torch

from nst.core.encoder import (
    CONVS,
    LAYERS,
    Encoder,
    VGGWeights,
    from_torchvision,
    load_vgg,
    register_vgg_sources,
    to_our_layout,
)
from nst.core.weights import Registry
from nst.errors import NSTError

EXPECTED = {"conv1_1": (64, 3), "conv1_2": (64, 64), "conv2_1": (128, 64), "conv3_1": (256, 128), "conv3_4": (256, 256),
            "conv4_1": (512, 256), "conv5_4": (512, 512)}


def registry() -> Registry:
    r = Registry()
    register_vgg_sources(r)
    return r


@pytest.fixture(scope="module")
def real():
    return load_vgg(registry(), "vgg19", progress=False)


def test_embedded_weights_have_vgg19_shapes(real):
    assert real.convention == "caffe"
    assert len([k for k in real.state if k.endswith(".weight")]) == 16
    for name, (c_out, c_in) in EXPECTED.items():
        assert real.state[f"{name}.weight"].shape == (c_out, c_in, 3, 3)
        assert real.state[f"{name}.bias"].shape == (c_out,)
    # dequantised weights take at most 256 distinct values per layer, and are not degenerate
    w = real.state["conv3_1.weight"]
    assert 16 < w.unique().numel() <= 256 and w.std() > 1e-3


def test_real_encoder_features_are_finite_and_respond_to_input(real):
    enc = Encoder(real, "max")
    torch.manual_seed(0)
    a, b = torch.rand(1, 3, 64, 48), torch.rand(1, 3, 64, 48)
    fa = enc(a, ["relu1_1", "relu4_2", "relu5_1", "pool5"])
    assert fa["relu1_1"].shape == (1, 64, 64, 48)
    assert fa["relu4_2"].shape == (1, 512, 8, 6)
    assert fa["pool5"].shape == (1, 512, 2, 2)
    for v in fa.values():
        assert torch.isfinite(v).all() and v.abs().mean() > 0
    fb = enc(b, ["relu4_2"])
    assert (fa["relu4_2"] - fb["relu4_2"]).abs().mean() > 0.01 * fa["relu4_2"].abs().mean()


def test_real_weights_recognise_edges_better_than_noise(real):
    """Sanity that the weights are trained: relu1_1 reacts more to a sharp edge than to a flat image."""
    enc = Encoder(real, "max")
    flat = torch.full((1, 3, 32, 32), 0.5)
    edge = flat.clone()
    edge[..., 16:] = 1.0
    diff = enc(edge, ["relu1_1"])["relu1_1"] - enc(flat, ["relu1_1"])["relu1_1"]
    assert diff[..., 14:18].abs().mean() > 5 * diff[..., :8].abs().mean()


def test_layer_names_cover_vgg19():
    assert LAYERS[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert LAYERS[-1] == "pool5" and "relu5_4" in LAYERS and len(LAYERS) == 16 * 2 + 5


def test_forward_stops_at_deepest_requested_layer(tiny_weights):
    calls = []
    enc = Encoder(load_vgg(registry(), str(tiny_weights), progress=False))
    for name, conv in enc.convs.items():
        conv.register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    enc(torch.rand(1, 3, 32, 32), ["relu2_1"])
    assert calls == ["conv1_1", "conv1_2", "conv2_1"]


def test_avg_and_max_pooling_differ(tiny_weights):
    w = load_vgg(registry(), str(tiny_weights), progress=False)
    x = torch.rand(1, 3, 32, 32)
    a = Encoder(w, "avg")(x, ["relu3_1"])["relu3_1"]
    m = Encoder(w, "max")(x, ["relu3_1"])["relu3_1"]
    assert a.shape == m.shape and not torch.allclose(a, m)
    with pytest.raises(NSTError, match="pooling"):
        Encoder(w, "median")


def zero_state(width: int = 8) -> dict:
    out, c_in = {}, 3
    for c in CONVS:
        out[f"{c}.weight"] = torch.zeros(width, c_in, 3, 3)
        out[f"{c}.bias"] = torch.zeros(width)
        c_in = width
    return out


def test_preprocessing_conventions():
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0] = 1.0  # pure red
    y = Encoder(VGGWeights(zero_state(), "caffe")).preprocess(x)
    assert y[0, 2, 0, 0].item() == pytest.approx(255 - 123.68)  # red lands in channel 2 (BGR), minus the mean
    assert y[0, 0, 0, 0].item() == pytest.approx(-103.939)
    t = Encoder(VGGWeights(zero_state(), "torch")).preprocess(x)
    assert t[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229)


def test_layout_detection():
    tv = {}
    for idx in [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]:
        tv[f"features.{idx}.weight"] = torch.full((2, 2, 3, 3), float(idx))
        tv[f"features.{idx}.bias"] = torch.zeros(2)
    tv["classifier.0.weight"] = torch.zeros(4, 4)
    w = to_our_layout(tv, "vgg19-dcbb9e9d.pth")
    assert w.convention == "torch" and w.state["conv3_1.weight"][0, 0, 0, 0].item() == 10.0
    assert to_our_layout(tv, "vgg19-d01eb7cb.pth").convention == "caffe"
    assert "classifier.0.weight" not in from_torchvision(tv)
    with pytest.raises(NSTError, match="not VGG19 weights"):
        to_our_layout({"foo": torch.zeros(1)}, "x.pth")


def test_feature_size_matches_the_forward_pass(tiny_weights):
    enc = Encoder(load_vgg(registry(), str(tiny_weights), progress=False))
    feats = enc(torch.rand(1, 3, 37, 50), LAYERS)
    for name, f in feats.items():
        assert enc.feature_size((37, 50), name) == tuple(f.shape[-2:]), name

"""Backbone weights, model shapes and the neighbour mask."""

import torch

from drdc_trt.config import BackboneConfig, preset
from drdc_trt.methods.drdc.base_model import BaseModel
from drdc_trt.models.unet import UNet
from drdc_trt.models.backbone import Backbone, lite0_package_weights
from drdc_trt.methods.drdc.transformer import neighbor_mask


def test_package_weights_map_exactly_onto_timm_lite0():
    import timm  # a dependency of the package
    sd = lite0_package_weights()
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    # the mapped weights are ImageNet weights, not an init: BN statistics are non-trivial
    assert float(sd["bn1.running_var"].std()) > 0.01


def test_backbone_features_shape():
    b = Backbone(BackboneConfig(), feature_size=4)
    f = b(torch.zeros(1, 3, 64, 64))
    assert f.shape == (1, 16 + 24 + 40 + 112, 4, 4)
    assert not any(p.requires_grad for p in b.parameters())


def test_neighbor_mask():
    m = neighbor_mask(4, 3)
    assert m.shape == (16, 16)
    assert torch.isinf(m[5, 0]) and torch.isinf(m[5, 10]) and m[5, 15] == 0  # (1,1) vs (0,0), (2,2), (3,3)
    assert torch.isinf(m.diagonal()).all()
    assert (torch.isfinite(m).sum(1) > 0).all(), "a token must see something"


def test_shapes_tiny():
    cfg = preset("tiny")
    base = BaseModel(cfg)
    assert base(torch.zeros(2, 3, 32, 32)).shape == (2, 2, 2)
    u = UNet(cfg.unet)
    assert u(torch.zeros(3, 6, 32, 32), torch.tensor([0.0, 10.0, 999.0])).shape == (3, 3, 32, 32)


def test_unet_sizes_match_the_design():
    """DESIGN: fast ≈ 30 M parameters, paper ≈ 120 M (counted, not run)."""
    for name, lo, hi in [("fast", 28e6, 34e6), ("paper", 115e6, 130e6)]:
        with torch.device("meta"):
            n = sum(p.numel() for p in UNet(preset(name).unet).parameters())
        assert lo < n < hi, (name, n)

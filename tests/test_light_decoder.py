"""The n-light decoder, the exact bilinear upsampling and starting one network from another."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inspectd.errors import InspectdError
from inspectd.model.checkpoint import save_checkpoint
from inspectd.model.config import load_preset
from inspectd.model.network import build_model, build_random_calibrated
from inspectd.model.pretrained import initialise
from inspectd.model.upsample import BilinearUpsample


@pytest.mark.parametrize("scale,shape", [(4, (2, 4, 56, 56)), (4, (1, 3, 7, 9)), (2, (1, 5, 6, 4)), (8, (1, 1, 3, 3))])
def test_phase_upsampling_equals_bilinear_interpolation(scale, shape):
    x = torch.randn(*shape)
    want = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    got = BilinearUpsample(shape[1], scale)(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_seg_logits_unchanged_by_the_exact_upsampling():
    net = build_random_calibrated(load_preset("n"))
    x = torch.rand(1, 1, 224, 224)
    with torch.no_grad():
        f = net.encoder(x)
        head = net.seg_head
        h = F.interpolate(head.aspp(f.p3), size=f.low.shape[-2:], mode="bilinear", align_corners=False)
        logits = head.classifier(head.fuse(torch.cat((h, head.low(f.low)), 1)))
        want = F.interpolate(logits, size=(224, 224), mode="bilinear", align_corners=False)
        torch.testing.assert_close(net(x).seg, want, atol=1e-4, rtol=0)


def test_light_preset_is_smaller_and_keeps_the_papers_modules():
    n, light = load_preset("n"), load_preset("n-light")
    assert light.aspp == "ddwaspp" and light.resdwab_blocks >= 1       # the paper's modules, switchable
    a, b = build_model(n), build_model(light)
    c = build_model(light.replace(seg_fuse="dwsep"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert len(b.seg_head.low) == 2 and len(a.seg_head.low) == 4
    assert count(c.seg_head) < count(b.seg_head) < count(a.seg_head)
    assert count(c.seg_head.fuse) < count(b.seg_head.fuse) / 4      # depthwise-separable fusion
    b.eval()
    with torch.no_grad():
        out = b(torch.rand(1, 1, 224, 224))
    assert out.seg.shape == (1, 4, 224, 224)


def test_seg_width_must_be_a_multiple_of_8():
    cfg = load_preset("n").to_dict()
    cfg["seg_width"] = 20
    with pytest.raises(InspectdError, match="seg_width"):
        type(load_preset("n")).from_dict(cfg, "test.yaml")


def test_init_from_a_checkpoint_with_another_decoder_loads_what_matches(tmp_path):
    src = build_random_calibrated(load_preset("n"), seed=3)
    path = save_checkpoint(src, tmp_path / "n.safetensors")
    net = build_model(load_preset("n-light").replace(seg_fuse="dwsep"))
    report = initialise(net, path)
    by_status = {s: [t.name for t in report.tensors if t.status == s] for s in ("loaded", "new")}
    assert not [k for k in by_status["new"] if not k.startswith("seg_head.")]   # encoder, detection: all loaded
    assert any(k.startswith("seg_head.aspp.") for k in by_status["loaded"])
    assert any(k.startswith("seg_head.low.") for k in by_status["new"])
    assert any(k.startswith("seg_head.fuse.") for k in by_status["new"])
    own, theirs = net.state_dict(), src.state_dict()
    for k in by_status["loaded"]:
        torch.testing.assert_close(own[k], theirs[k])
    assert "resdwab_expand: 4 -> 2" in " ".join(report.notes)


def test_init_refuses_a_checkpoint_with_other_classes(tmp_path):
    other = load_preset("n").replace(class_names=["a", "b"])
    path = save_checkpoint(build_model(other), tmp_path / "other.safetensors")
    with pytest.raises(InspectdError, match="class_names"):
        initialise(build_model(load_preset("n-light")), path)

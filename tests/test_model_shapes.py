"""Output shapes of both presets at square and non-square sizes, batch 1 and 4, 1 and 3 channels."""
import pytest
import torch

from inspectd.model.config import load_preset
from inspectd.model.inference_graph import InferenceGraph
from inspectd.model.network import build_model


@pytest.fixture(scope="module", params=["n", "s"])
def preset(request):
    return request.param


@pytest.mark.parametrize("size", [(224, 224), (256, 320)])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("batch", [1, 4])
def test_output_shapes(preset, size, channels, batch):
    cfg = load_preset(preset).replace(input_size=list(size), in_channels=channels)
    model = build_model(cfg)
    h, w = size
    nc, ns = cfg.num_classes, cfg.num_seg_classes
    x = torch.rand(batch, channels, h, w)

    model.train()
    with torch.no_grad():
        out = model(x)
    assert [tuple(t.shape) for t in out.det] == [(batch, 3, h // s, w // s, 5 + nc) for s in (8, 16, 32)]
    assert tuple(out.seg.shape) == (batch, ns, h, w)
    assert [tuple(a.shape) for a in out.aux] == [(batch, ns, h, w)] * 3  # deep supervision in training

    graph = InferenceGraph(model)
    with torch.no_grad():
        det, seg = graph(torch.randint(0, 256, (batch, channels, h, w), dtype=torch.uint8))
    anchors = 3 * sum((h // s) * (w // s) for s in (8, 16, 32))
    assert tuple(det.shape) == (batch, anchors, 5 + nc)
    assert tuple(seg.shape) == (batch, ns, h, w)
    assert torch.allclose(seg.sum(1), torch.ones(batch, h, w), atol=1e-4)  # softmax lives in the graph
    assert float(det[..., 4:].min()) >= 0 and float(det[..., 4:].max()) <= 1


def test_heads_return_raw_logits():
    model = build_model(load_preset("n")).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 224, 224))
    # Raw logits are unbounded: the objectness bias prior alone puts them far below 0.
    assert float(out.det[0][..., 4].max()) < 0
    assert not torch.allclose(out.seg.sum(1), torch.ones(1, 224, 224), atol=1e-2)


def test_aux_heads_absent_in_inference():
    model = build_model(load_preset("n")).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 224, 224))
    assert out.aux == []


@pytest.mark.parametrize("bad", [[200, 200], [224], [0, 224]])
def test_input_size_must_be_multiple_of_32(bad):
    from inspectd.errors import InspectdError
    cfg = load_preset("n").to_dict()
    cfg["input_size"] = bad
    with pytest.raises(InspectdError, match="input_size"):
        type(load_preset("n")).from_dict(cfg, "test.yaml")


def test_ablation_switches_change_the_graph():
    base = load_preset("n")
    full = build_model(base)
    plain_aspp = build_model(base.replace(aspp="denseaspp"))
    no_resdwab = build_model(base.replace(resdwab_blocks=0))
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # Full 3x3 atrous convolutions cost far more than depthwise ones; no resDWAB costs less.
    assert n(plain_aspp.seg_head.aspp) > 2 * n(full.seg_head.aspp)
    assert len(no_resdwab.seg_head.low) == 0 and len(full.seg_head.low) == 4
    assert n(no_resdwab.seg_head) < n(full.seg_head)
    for m in (plain_aspp, no_resdwab):
        m.eval()
        with torch.no_grad():
            assert m(torch.rand(1, 1, 224, 224)).seg.shape == (1, 4, 224, 224)

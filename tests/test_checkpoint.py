"""Checkpoints: round trip, no unpickling, one-line errors on mismatch and corruption."""
import pytest
import torch

from inspectd.errors import InspectdError
from inspectd.model.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from inspectd.model.config import load_preset
from inspectd.model.inference_graph import InferenceGraph
from inspectd.model.network import build_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(load_preset("n")).eval()
    path = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "m.safetensors", {"note": "test"})
    return model, path


def test_round_trip_gives_identical_outputs(saved):
    model, path = saved
    loaded, cfg = load_checkpoint(path)
    assert cfg.class_names == model.cfg.class_names and cfg.seg_class_names == model.cfg.seg_class_names
    x = torch.randint(0, 256, (2, 1, 224, 224), dtype=torch.uint8)
    with torch.no_grad():
        a, b = InferenceGraph(model)(x), InferenceGraph(loaded)(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert read_metadata(path)[1] == {"note": "test"}


def test_file_is_safetensors_not_pickle(saved):
    _, path = saved
    head = path.read_bytes()[:16]
    assert not head.startswith(b"\x80")  # a pickle protocol header would start with 0x80
    assert b"PK" not in head[:2]         # nor a zip (torch.save) archive


def test_mismatched_config_names_the_key(saved):
    _, path = saved
    expected = load_preset("n").replace(class_names=["a", "b"])
    with pytest.raises(InspectdError, match=r"does not match the model config: class_names"):
        load_checkpoint(path, expected=expected)
    with pytest.raises(InspectdError, match=r"width_multiple"):
        load_checkpoint(path, expected=load_preset("s"))


def test_weights_of_another_shape_are_named(tmp_path):
    model = build_model(load_preset("n"))
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    # Rewrite the metadata to claim another preset: the weights no longer fit.
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    meta["model_config"] = meta["model_config"].replace('"width_multiple": 0.25', '"width_multiple": 0.5')
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(InspectdError, match=r"weight .* has shape"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x80\x04\x95pickle"])
def test_corrupt_or_missing_file_is_one_line(tmp_path, content):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    with pytest.raises(InspectdError) as err:
        load_checkpoint(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InspectdError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")

"""Starting from YOLOv5 weights: the safe reader, the mapping onto the network, the errors.

The checkpoints are made here (tests/yolov5_layout.py: YOLOv5's pickle structure, random
weights); one test also reads the real yolov5n file from ../shared/weights/ where it exists.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

import yolov5_layout
from inspectd.errors import InspectdError
from inspectd.model.config import load_preset
from inspectd.model.network import build_model
from inspectd.model.pretrained import initialise
from inspectd.model.yolov5 import LAYER_TO_MODULE, V6_LAYERS, read_yolov5

REAL = next((p for p in (Path("../shared/weights/yolov5n-v6.1-coco.pt"),
                         Path(__file__).resolve().parents[2] / "shared/weights/yolov5n-v6.1-coco.pt")
             if p.is_file()), None)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """(path, the YOLOv5-layout model it holds, in float32 as rounded to the saved float16)."""
    model = yolov5_layout.build()
    path = yolov5_layout.save(model, tmp_path_factory.mktemp("w") / "yolov5n.pt")
    ref = {k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    return path, ref


def _dst(src: str) -> str:
    _, layer, rest = src.split(".", 2)
    return f"{LAYER_TO_MODULE[int(layer)]}.{rest}"


def test_reader_gives_yolov5_state_dict_and_layout(fake):
    path, ref = fake
    ck = read_yolov5(path)
    assert set(ck.state) == set(ref)
    for k, v in ref.items():
        assert torch.equal(ck.state[k].float() if v.is_floating_point() else ck.state[k], v), k
    assert ck.state["model.0.conv.weight"].dtype == torch.float16  # as YOLOv5 saves it
    assert ck.layer_types == list(V6_LAYERS)
    assert (ck.depth_multiple, ck.width_multiple, ck.preset) == (0.33, 0.25, "yolov5n")
    assert ck.entry == "model" and ck.yaml["nc"] == 80 and len(ck.names) == 80
    assert ck.anchors_pixels() == [[float(x) for x in a] for a in yolov5_layout.COCO_ANCHORS]


def test_reader_prefers_the_ema_weights(tmp_path):
    model, ema = yolov5_layout.build(seed=1), yolov5_layout.build(seed=2)
    path = yolov5_layout.save(model, tmp_path / "ema.pt", ema=ema)
    ck = read_yolov5(path)
    assert ck.entry == "ema"
    assert torch.equal(ck.state["model.0.conv.weight"], ema.state_dict()["model.0.conv.weight"].half())


def test_every_tensor_lands_in_its_place(fake, tmp_path):
    path, ref = fake
    cfg = load_preset("n")
    torch.manual_seed(0)
    net = build_model(cfg)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    report = initialise(net, path)
    got = net.state_dict()
    na, no, no_src = 3, 5 + cfg.num_classes, 85
    mapped = set()
    for src, v in ref.items():
        if src == "model.24.anchors":
            continue
        dst = _dst(src)
        mapped.add(dst)
        if src == "model.0.conv.weight":  # Mono8 stem: the RGB kernel summed over input channels
            assert got[dst].shape == (16, 1, 6, 6)
            assert torch.allclose(got[dst], v.sum(1, keepdim=True))
        elif src.startswith("model.24.m."):  # box + objectness rows per anchor kept, class rows new
            g, s, f = (t.view(na, -1, *t.shape[1:]) for t in (got[dst], v, fresh[dst]))
            assert s.shape[1] == no_src and g.shape[1] == no
            assert torch.equal(g[:, :5], s[:, :5])
            assert torch.equal(g[:, 5:], f[:, 5:])
        else:
            assert torch.equal(got[dst], v.to(got[dst].dtype)), src
    # BatchNorm running statistics come along.
    assert torch.equal(got["encoder.fpn.c3_p3.cv3.bn.running_var"], ref["model.17.cv3.bn.running_var"])
    # Everything the YOLOv5 model has no counterpart for is as the fresh network built it.
    for k in set(got) - mapped:
        assert k.startswith(("seg_head.", "aux_heads.", "det_head.anchors", "det_head.strides")), k
        assert torch.equal(got[k], fresh[k]), k
    assert got["det_head.anchors"].view(3, 6).tolist() == [[float(x) for x in a] for a in cfg.anchors]
    # The new class rows carry the class-prior bias (log(0.6 / (nc - 0.99))).
    bias = got["det_head.m.0.bias"].view(na, no)[:, 5:]
    assert torch.all(bias < -1.5)  # log(0.6 / 5.01) = -2.1, plus the conv's own small init

    by = {t.name: t for t in report.tensors}
    assert set(by) == set(got)
    assert by["encoder.backbone.stem.conv.weight"].status == "adapted"
    assert by["det_head.m.2.weight"].status == "adapted" and by["det_head.m.2.weight"].source == "model.24.m.2.weight"
    assert by["encoder.backbone.stage5.2.cv2.conv.weight"].status == "loaded"
    assert all(by[k].status == "new" for k in got if k.startswith(("seg_head.", "aux_heads.")))
    assert {t.source for t in report.tensors if t.source} | {"model.24.anchors"} == set(ref)
    assert any("anchors differ" in n for n in report.notes)
    rows = {r["part"]: r for r in report.rows()}
    assert rows["segmentation decoder"]["loaded"]["tensors"] == 0
    assert rows["encoder: FPN"]["new"]["tensors"] == 0 and rows["detection: PAN"]["new"]["tensors"] == 0
    report.write(tmp_path)
    md = (tmp_path / "init_report.md").read_text()
    assert "| detection: head | 24 (Detect) |" in md and "summed over input channels" in md
    assert (tmp_path / "init_report.json").stat().st_size > 0


def test_rgb_config_loads_the_stem_unchanged(fake):
    path, ref = fake
    net = build_model(load_preset("n").replace(in_channels=3))
    report = initialise(net, path)
    assert torch.equal(net.state_dict()["encoder.backbone.stem.conv.weight"], ref["model.0.conv.weight"])
    assert next(t for t in report.tensors if t.name == "encoder.backbone.stem.conv.weight").status == "loaded"


def _write_torch_zip(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    return path


MARKER_DIR: Path | None = None


def write_marker(name: str) -> None:
    """A side effect a malicious pickle would like to run."""
    (MARKER_DIR / name).write_text("ran")


class _Calls:
    """Pickles as a call of ``fn(*args)`` (what a crafted checkpoint does)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.Popen", "side_effect"])
def test_a_pickle_naming_code_runs_nothing(tmp_path, monkeypatch, kind, protocol):
    global MARKER_DIR
    monkeypatch.setattr(__import__(__name__), "MARKER_DIR", tmp_path)
    marker = tmp_path / "marker"
    call = {"os.system": _Calls(os.system, f"touch {marker}"),
            "builtins.eval": _Calls(eval, f"open({str(marker)!r}, 'w').write('ran')"),
            "subprocess.Popen": _Calls(subprocess.Popen, ["touch", str(marker)]),
            "side_effect": _Calls(write_marker, "marker")}[kind]
    # The call sits where YOLOv5's model object would, inside an otherwise ordinary checkpoint.
    payload = pickle.dumps({"epoch": -1, "model": call, "ema": None}, protocol=protocol)
    path = _write_torch_zip(tmp_path / "evil.pt", payload)
    net = build_model(load_preset("n"))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InspectdError) as exc:
        initialise(net, path)
    msg = str(exc.value)
    assert "\n" not in msg and "refused" in msg
    # (protocol 2 spells some names the Python 2 way: __builtin__.eval, commands.Popen.)
    assert kind.split(".")[-1].replace("side_effect", "write_marker") in msg, msg
    assert not marker.exists()
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # nothing loaded


def test_a_stand_in_class_cannot_smuggle_a_call(tmp_path):
    # A class of an allowed module is only a stand-in: calling it runs nothing of YOLOv5's.
    class Model:  # pickled as models.yolo.Model with constructor arguments
        def __reduce__(self):
            return (Model, ("rm -rf /",))
    Model.__module__, Model.__qualname__ = "models.yolo", "Model"
    import sys
    import types
    mod = types.ModuleType("models.yolo")
    mod.Model = Model
    saved = {n: sys.modules.get(n) for n in ("models", "models.yolo")}
    sys.modules["models"], sys.modules["models.yolo"] = types.ModuleType("models"), mod
    try:
        payload = pickle.dumps({"model": Model()}, protocol=2)
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
    with pytest.raises(InspectdError, match="not a module|no yaml"):
        read_yolov5(_write_torch_zip(tmp_path / "x.pt", payload))


@pytest.mark.parametrize("build_kwargs, message", [
    ({"width": 0.5}, "is yolov5s (depth 0.33, width 0.5); model config 'n' expects depth 0.33, width 0.25"),
    ({"depth": 0.67, "width": 0.75}, "is yolov5m"),
    ({"layer9": yolov5_layout.SPP}, "layer 9 is SPP, the YOLOv5 v6 layout inspectd maps has SPPF"),
])
def test_another_preset_or_architecture_fails_with_one_line(tmp_path, build_kwargs, message):
    path = yolov5_layout.save(yolov5_layout.build(**build_kwargs), tmp_path / "other.pt")
    with pytest.raises(InspectdError) as exc:
        initialise(build_model(load_preset("n")), path)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert exc.value.exit_code == 2


def test_class_count_of_the_checkpoint_does_not_matter(tmp_path):
    path = yolov5_layout.save(yolov5_layout.build(nc=3), tmp_path / "nc3.pt")
    net = build_model(load_preset("n"))
    initialise(net, path)
    assert net.state_dict()["det_head.m.1.weight"].shape[0] == 3 * 11


def test_bad_files_fail_with_one_line(tmp_path, fake):
    path, _ = fake
    net = build_model(load_preset("n"))
    cases = {}
    cases["missing"] = tmp_path / "absent.pt"
    (tmp_path / "text.pt").write_text("not a checkpoint at all\n")
    cases["not a zip"] = tmp_path / "text.pt"
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    cases["truncated"] = tmp_path / "cut.pt"
    # A zip whose tensor records are shorter than the pickle says.
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / "short.pt", "w") as dst:
        for n in src.namelist():
            b = src.read(n)
            dst.writestr(n, b[: len(b) // 2] if "/data/" in n else b)
    cases["short record"] = tmp_path / "short.pt"
    with zipfile.ZipFile(tmp_path / "nopkl.pt", "w") as z:
        z.writestr("archive/version", "3\n")
    cases["no data.pkl"] = tmp_path / "nopkl.pt"
    _write_torch_zip(tmp_path / "list.pt", pickle.dumps([1, 2, 3], protocol=2))
    cases["not YOLOv5"] = tmp_path / "list.pt"
    expected = {"missing": "not found", "not a zip": "not a torch zip archive",
                "truncated": "damaged or truncated", "short record": "is truncated",
                "no data.pkl": "no data.pkl", "not YOLOv5": "not a YOLOv5 checkpoint"}
    for name, p in cases.items():
        with pytest.raises(InspectdError) as exc:
            initialise(net, p)
        assert expected[name] in str(exc.value) and "\n" not in str(exc.value), (name, str(exc.value))


def test_hostile_structures_fail_with_one_line(tmp_path, fake):
    path, _ = fake
    # A module tree that contains itself (pickle keeps cycles).
    model = yolov5_layout.build()
    model.model._modules["loop"] = model.model
    cyclic = yolov5_layout.save(model, tmp_path / "cyclic.pt", half=False)
    # Tensor records compressed (torch never does; a compressed record could expand without bound).
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as dst:
        for n in src.namelist():
            dst.writestr(n, src.read(n))
    for p, expected in ((cyclic, "contains itself"), (tmp_path / "deflated.pt", "compressed")):
        with pytest.raises(InspectdError) as exc:
            initialise(build_model(load_preset("n")), p)
        assert expected in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_inspectd_checkpoints_still_start_a_run(tmp_path):
    from inspectd.model.checkpoint import save_checkpoint
    torch.manual_seed(3)
    src = build_model(load_preset("n"))
    save_checkpoint(src, tmp_path / "m.safetensors")
    net = build_model(load_preset("n"))
    report = initialise(net, tmp_path / "m.safetensors")
    assert report.kind == "inspectd" and all(t.status == "loaded" for t in report.tensors)
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in net.state_dict().items())


def _tiny_yolo_set(root: Path) -> Path:
    """Four 64x64 grey images of two made-up classes, YOLO layout."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), rng.integers(0, 255, (64, 64), dtype=np.uint8))
            (root / "labels" / split / f"{i}.txt").write_text(f"{i} 0.5 0.5 0.3 0.4\n")
    (root / "data.yaml").write_text("names: [dent, stain]\ntrain: images/train\nval: images/val\n")
    return root


def _train_script():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "train_script", Path(__file__).resolve().parents[1] / "pipelines/train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    return train


def test_train_script_exits_2_on_a_preset_mismatch(tmp_path, capsys):
    data = _tiny_yolo_set(tmp_path / "data")
    weights = yolov5_layout.save(yolov5_layout.build(width=0.5), tmp_path / "yolov5s.pt")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"model: n\ndata: {{root: {data}}}\n")
    rc = _train_script().main(["--config", str(cfg), "--init", str(weights), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "is yolov5s" in err


@pytest.mark.slow
def test_a_run_starts_from_yolov5_weights_and_resumes(tmp_path, fake, capsys):
    from inspectd.training.config import StageConfig, TrainConfig
    from inspectd.training.loop import Trainer
    path, ref = fake
    data = _tiny_yolo_set(tmp_path / "data")
    cfg = TrainConfig(model="n", init=str(path), batch_size=2, ema=False, seed=0,
                      model_overrides={"input_size": [64, 64]},
                      stages=[StageConfig(name="all", epochs=1, lr0=0.0, warmup_epochs=0)])
    cfg.data.root = str(data)
    run = tmp_path / "run"
    trainer = Trainer(cfg, run, show_progress=True)
    out = capsys.readouterr().out
    assert "| encoder: backbone | 0-9 |" in out and "anchors differ" in out  # the table on the terminal
    assert (run / "init_report.md").exists() and (run / "init_report.json").exists()
    w = trainer.model.state_dict()["encoder.fpn.lateral5.conv.weight"]
    assert torch.equal(w, ref["model.10.conv.weight"])
    trainer.fit()
    # A later session resumes the folder: the weights come from last.pt, not from --init again.
    (run / "init_report.md").unlink()
    cfg.stages[0].epochs = 2
    resumed = Trainer(cfg, run, resume=True, show_progress=False)
    assert resumed.epoch == 1 and not (run / "init_report.md").exists()
    hist = resumed.fit()
    assert [r["epoch"] for r in hist] == [1, 2]


@pytest.mark.skipif(REAL is None, reason="../shared/weights/yolov5n-v6.1-coco.pt not found")
def test_real_yolov5n_coco_checkpoint_maps_every_tensor():
    ck = read_yolov5(REAL)
    assert len(ck.state) == 349 and ck.preset == "yolov5n" and ck.yaml["nc"] == 80
    # The README's count: every float tensor but the anchors (BatchNorm running statistics included).
    assert sum(v.numel() for k, v in ck.state.items() if v.is_floating_point() and not k.endswith("anchors")) \
        == 1_881_661
    net = build_model(load_preset("n"))
    report = initialise(net, REAL)
    assert {t.source for t in report.tensors if t.source} | {"model.24.anchors"} == set(ck.state)
    got = net.state_dict()
    for src, v in ck.state.items():
        if src.startswith(("model.24.", "model.0.conv.weight")):
            continue
        assert torch.equal(got[_dst(src)], v.to(got[_dst(src)].dtype)), src
    assert torch.allclose(got["encoder.backbone.stem.conv.weight"], ck.state["model.0.conv.weight"].float().sum(1, keepdim=True))
    counts = {st: sum(t.status == st for t in report.tensors) for st in ("loaded", "adapted", "new")}
    assert counts["loaded"] == 341 and counts["adapted"] == 7
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 224, 224))
    assert all(torch.isfinite(d).all() for d in out.det) and torch.isfinite(out.seg).all()

"""`inspectd train` on a user's own data: a YOLO-layout export with two made-up classes, trained
for a few steps, then a real recording replayed through the daemon with the trained model, its
events checked against the published JSON schema (file output and a real loopback socket)."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest
import torch

from inspectd.bus.messages import load_schema
from inspectd.cli import main
from inspectd.model.checkpoint import read_metadata

ROOT = Path(__file__).resolve().parents[1]
INSPECTD = [sys.executable, "-m", "inspectd.cli"]
CLASSES = ["blob", "streak"]          # made up: no NEU name anywhere
SIZE = 64


def _draw(rng: np.random.Generator, h: int, w: int, blobs: int, streaks: int):
    """Grey textured steel with bright round blobs and dark vertical streaks; boxes and a mask."""
    img = rng.normal(120, 10, (h, w)).clip(0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    boxes = []
    for _ in range(blobs):
        r = int(rng.integers(5, 10))
        cx, cy = int(rng.integers(r + 1, w - r - 1)), int(rng.integers(r + 1, h - r - 1))
        cv2.circle(img, (cx, cy), r, 225, -1)
        cv2.circle(mask, (cx, cy), r, 1, -1)          # mask value 1 = class 0 (blob)
        boxes.append((0, cx - r, cy - r, cx + r + 1, cy + r + 1))
    for _ in range(streaks):
        x = int(rng.integers(2, w - 6))
        cv2.rectangle(img, (x, 3), (x + 3, h - 4), 35, -1)
        boxes.append((1, x, 3, x + 4, h - 3))
    return img, mask, boxes


def make_yolo_set(root: Path, n_train: int = 12, n_val: int = 4) -> Path:
    """A labelling tool's export: data.yaml, images/<split>/, labels/<split>/, masks for half."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for sub in ("images", "labels", "masks"):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, mask, boxes = _draw(rng, SIZE, SIZE, 1, 1)
            cv2.imwrite(str(root / "images" / split / f"{split}_{i}.png"), img)
            lines = [f"{c} {(x1 + x2) / 2 / SIZE:.5f} {(y1 + y2) / 2 / SIZE:.5f} {(x2 - x1) / SIZE:.5f} "
                     f"{(y2 - y1) / SIZE:.5f}" for c, x1, y1, x2, y2 in boxes]
            (root / "labels" / split / f"{split}_{i}.txt").write_text("\n".join(lines) + "\n")
            if i % 2 == 0:          # masks are optional: half the images have one
                cv2.imwrite(str(root / "masks" / split / f"{split}_{i}.png"), mask)
    (root / "data.yaml").write_text(
        "# exported by a labelling tool\nnames:\n  0: blob\n  1: streak\ntrain: images/train\nval: images/val\n")
    return root


TRAIN_CONFIG = f"""\
model: n
model_overrides: {{input_size: [{SIZE}, {SIZE}]}}
batch_size: 4
threads: 2
seed: 0
stages:
  - {{name: all, epochs: 1, lr0: 0.01, warmup_epochs: 0}}
"""

# Low thresholds: a model trained for three steps scores low, yet its defects must reach the events.
REPLAY_CONFIG = """\
camera: line1
inference: {backend: torch, device: cpu, threads: 2, conf_threshold: 0.005, tile_overlap_px: 16, max_det: 20}
merge:
  default: {min_score: 0.005, reject_score: 0.9}
bus: {heartbeat_interval_s: 0.1}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("custom")
    data = make_yolo_set(base / "export")
    cfg = base / "tiny.yaml"
    cfg.write_text(TRAIN_CONFIG)
    run = base / "run"
    code = main(["train", "--data", str(data), "--config", str(cfg), "--out", str(run), "--device", "cpu",
                 "--no-progress"])
    assert code == 0
    return data, run


def test_train_writes_a_run_whose_model_names_the_data_classes(trained):
    _data, run = trained
    for name in ("config.json", "metrics.csv", "metrics.json", "curves.png", "last.pt", "last.safetensors",
                 "best.safetensors"):
        assert (run / name).is_file(), name
    cfg, info = read_metadata(run / "best.safetensors")
    assert cfg.class_names == CLASSES
    assert cfg.seg_class_names == ["background", "blob"]     # only blob has mask pixels
    assert cfg.input_size == [SIZE, SIZE]
    assert info["data"]["layout"] == "yolo" and info["data"]["train_images"] == 12
    assert info["precision"] in ("float32", "bfloat16 autocast")      # CPU: never fp16
    rows = json.loads((run / "metrics.json").read_text())
    assert len(rows) == 1 and np.isfinite(rows[0]["train_total"]) and "val_map50" in rows[0]


def _write_recording(path: Path, frames: int = 5, h: int = 96, w: int = 160) -> Path:
    rng = np.random.default_rng(7)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h), isColor=False)
    assert writer.isOpened()
    for _ in range(frames):
        img, _mask, _boxes = _draw(rng, h, w, 2, 1)
        writer.write(img)
    writer.release()
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_replay_with_the_trained_model_emits_schema_valid_events(trained, tmp_path):
    import zmq

    _data, run = trained
    video = _write_recording(tmp_path / "strip.avi")
    cfg = tmp_path / "replay.yaml"
    cfg.write_text(REPLAY_CONFIG)
    out = tmp_path / "verdicts.jsonl"
    address = f"tcp://127.0.0.1:{_free_port()}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 500)
    sub.connect(address)                    # before the publisher binds: ZeroMQ reconnects
    p = subprocess.Popen([*INSPECTD, "replay", str(video), "--model", str(run / "best.safetensors"),
                          "--config", str(cfg), "--out", str(out), "--publish", address, "--loop", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    received: list[tuple[bytes, dict]] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            try:
                topic, payload = sub.recv_multipart()[:2]
            except zmq.Again:
                continue
            received.append((topic, json.loads(payload)))
            kinds = [m["kind"] for _, m in received]
            if kinds.count("verdict") >= 8 and "defect" in kinds:
                break
    finally:
        sub.close(0)
        ctx.term()
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err

    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    for topic, msg in received:
        validator.validate(msg)
        if msg["kind"] == "defect":
            assert topic.decode().startswith(f"defect/line1/{msg['class']}")
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(verdicts) >= 5
    for v in verdicts:
        validator.validate(v)
    defects = [d for v in verdicts for d in v["defects"]]
    assert defects, "the trained model reported nothing even at a 0.005 threshold"
    assert {d["class"] for d in defects} <= set(CLASSES)
    published = {m["class"] for _, m in received if m["kind"] == "defect"}
    assert published and published <= set(CLASSES)


def test_evaluate_reads_the_yolo_layout(trained, tmp_path, capsys):
    data, run = trained
    out = tmp_path / "val.json"
    code = main(["evaluate", "--data", str(data), "--model", str(run / "best.safetensors"), "--json", str(out),
                 "--speed-seconds", "0", "--threads", "2", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    d = json.loads(out.read_text())
    assert list(d["ap50"]) == CLASSES and list(d["iou"]) == ["background", "blob"]
    assert d["num_images"] == 4 and d["num_gt"] == {"blob": 4, "streak": 4}
    assert d["info"]["layout"] == "yolo"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def test_bad_input_is_one_line_with_the_right_status(trained, tmp_path, capsys):
    data, _run = trained
    # usage: a missing folder, nothing to train on, a bad option value, an existing run (2)
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "nope" in _one_line(capsys)
    assert main(["train", "--out", str(tmp_path / "r")]) == 2
    assert "--data" in _one_line(capsys)
    assert main(["train", "--data", str(data), "--epochs", "0", "--out", str(tmp_path / "r")]) == 2
    assert "--epochs 0" in _one_line(capsys)
    assert main(["train", "--data", str(data), "--device", "tpu", "--out", str(tmp_path / "r")]) == 2
    assert "tpu" in _one_line(capsys)
    assert main(["train", "--data", str(data), "--out", str(_run)]) == 2
    assert "--resume" in _one_line(capsys)
    # data the command line names: a label line that is not 'class cx cy w h', a class out of range (2)
    broken = tmp_path / "broken"
    make_yolo_set(broken, 2, 1)
    label = broken / "labels" / "train" / "train_1.txt"
    label.write_text("0 0.5 0.5\n")
    assert main(["train", "--data", str(broken), "--out", str(tmp_path / "r")]) == 2
    assert "train_1.txt line 1" in _one_line(capsys)
    label.write_text("2 0.5 0.5 0.1 0.1\n")
    assert main(["train", "--data", str(broken), "--out", str(tmp_path / "r")]) == 2
    assert "class 2" in _one_line(capsys)
    (broken / "data.yaml").write_text("names: [a b, c]\ntrain: images/train\nval: images/val\n")
    assert main(["train", "--data", str(broken), "--out", str(tmp_path / "r")]) == 2
    assert "'a b'" in _one_line(capsys)
    # the training config and what it names (78)
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 0\n")
    assert main(["train", "--data", str(data), "--config", str(bad), "--out", str(tmp_path / "r")]) == 78
    assert "batch_size" in _one_line(capsys)
    bad.write_text(f"data: {{root: {tmp_path / 'gone'}}}\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 78
    assert "gone" in _one_line(capsys)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\0" * 64)
    bad.write_text(f"init: {junk}\n")
    assert main(["train", "--data", str(data), "--config", str(bad), "--out", str(tmp_path / "r")]) == 78
    assert f"{bad}: init: " in _one_line(capsys)
    assert main(["train", "--data", str(data), "--init", str(junk), "--out", str(tmp_path / "r")]) == 2
    assert "--init: " in _one_line(capsys)
    assert not (tmp_path / "r" / "last.pt").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_trains_under_fp16_autocast_with_a_grad_scaler(trained, tmp_path):
    from inspectd.training.config import load_train_config
    from inspectd.training.loop import Trainer

    data, _run = trained
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(TRAIN_CONFIG)
    cfg = load_train_config(cfg_path)
    cfg.data.root, cfg.device = str(data), "cuda"
    t = Trainer(cfg, tmp_path / "run", show_progress=False)
    assert t.use_fp16 and t.autocast_dtype is torch.float16 and t.scaler.is_enabled()
    dtypes = set()
    first_conv = next(m for m in t.model.modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype))
    rows = t.fit()
    hook.remove()
    assert torch.float16 in dtypes                                  # the forward ran in fp16
    assert np.isfinite(rows[-1]["train_total"]) and t.scaler.get_scale() > 0
    _cfg, info = read_metadata(tmp_path / "run" / "last.safetensors")
    assert info["device"].startswith("cuda") and info["precision"] == "float16 autocast"
    assert next(t.model.parameters()).dtype is torch.float32       # fp32 master weights


def test_cpu_keeps_bf16_autocast_and_no_scaler(trained, tmp_path):
    from inspectd.training.config import load_train_config
    from inspectd.training.loop import Trainer

    data, _run = trained
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(TRAIN_CONFIG + "bf16: on\n")
    cfg = load_train_config(cfg_path)
    cfg.data.root, cfg.device = str(data), "cpu"
    t = Trainer(cfg, tmp_path / "run", show_progress=False)
    assert not t.use_fp16 and not t.scaler.is_enabled()
    assert t.autocast_dtype is torch.bfloat16 and t.precision() == "bfloat16 autocast"


def test_yolo_layout_variants_read_as_labelling_tools_write_them(tmp_path):
    """names as a list, splits as list files and Roboflow's '../' paths, polygon labels (their
    inside becomes the mask), label-less images, and masks with values that name no class."""
    from inspectd.data.layout import open_layout

    root = make_yolo_set(tmp_path / "d", 2, 1)
    (root / "train.txt").write_text("./images/train/train_0.png\nimages/train/train_1.png\n")
    (root / "data.yaml").write_text("names: [blob, streak]\nnc: 2\ntrain: train.txt\nval: ../images/val\n")
    poly = root / "labels" / "train" / "train_1.txt"
    poly.write_text("1 0.25 0.25 0.5 0.25 0.5 0.5 0.25 0.5\n")              # a square as a polygon
    (root / "masks" / "train" / "train_1.png").unlink(missing_ok=True)
    layout = open_layout(root)
    assert layout.kind == "yolo" and layout.class_names() == CLASSES
    items = layout.items("train")
    assert [Path(i).name for i in items] == ["train_0.png", "train_1.png"]
    assert [Path(i).name for i in layout.items("val")] == ["val_0.png"]
    raw = layout.load(items[1], CLASSES, 1)
    assert raw.classes.tolist() == [1] and np.allclose(raw.boxes, [[16, 16, 32, 32]])
    assert raw.mask is not None and raw.mask[24, 24] == 2 and raw.mask[5, 5] == 0   # 2 = class 1 + 1
    assert layout.masked_classes() == {"blob", "streak"}
    # the model may know more classes than the data, in another order: matched by name
    assert layout.load(items[1], ["dent", "streak", "blob"], 1).classes.tolist() == [1]
    poly.unlink()                                   # no label file: an image without defects
    assert len(layout.load(items[1], CLASSES, 1).boxes) == 0
    cv2.imwrite(str(root / "masks" / "train" / "train_0.png"), np.full((SIZE, SIZE), 7, np.uint8))
    with pytest.raises(Exception, match=r"train_0.png: value 7 is no class"):
        layout.load(items[0], CLASSES, 1)


def test_anchors_are_refitted_only_when_the_boxes_do_not_fit_them(trained):
    from inspectd.model.config import load_preset
    from inspectd.training.anchors import best_possible_recall, check_anchors

    preset = load_preset("n").anchors
    # Hairline scratches and flat streaks: most fit none of the NEU anchors within ratio 4.
    rng = np.random.default_rng(0)
    wh = np.concatenate([np.stack([rng.uniform(2, 4, 100), rng.uniform(60, 200, 100)], 1),
                         np.stack([rng.uniform(150, 220, 100), rng.uniform(2, 5, 100)], 1)])
    anchors, note = check_anchors(wh, preset, 4.0)
    assert "refitted" in note and best_possible_recall(wh, np.reshape(anchors, (-1, 2)), 4.0) >= 0.98
    assert best_possible_recall(wh, np.reshape(preset, (-1, 2)), 4.0) < 0.98
    assert len(anchors) == 3 and all(len(a) == 6 for a in anchors)
    # Boxes the preset fits: the anchors stay (a model of NEU data keeps the shipped model's).
    same, note = check_anchors(np.array([[30, 40], [60, 150], [140, 30]] * 20, float), preset, 4.0)
    assert same == preset and "kept" in note
    _data, run = trained
    _cfg, info = read_metadata(run / "best.safetensors")
    assert info["data"]["anchors"].startswith("anchors kept")


def test_neu_layout_with_other_classes_takes_them_from_the_annotations(tmp_path):
    from inspectd.data.layout import open_layout

    root = tmp_path / "voc"
    for sub in ("images", "annotations"):
        (root / sub).mkdir(parents=True)
    objects = {"a_1": [("rust", 4, 5, 30, 40)], "a_2": [("dent", 10, 10, 20, 20), ("rust", 30, 2, 60, 9)]}
    for stem, objs in objects.items():
        cv2.imwrite(str(root / "images" / f"{stem}.jpg"), np.full((64, 64, 3), 128, np.uint8))
        xml = "".join(f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
                      f"<ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in objs)
        (root / "annotations" / f"{stem}.xml").write_text(f"<annotation><filename>{stem}</filename>{xml}</annotation>")
    (root / "train.txt").write_text("a_1\na_2\n")
    layout = open_layout(root)
    assert layout.kind == "neu" and layout.class_names() == ["dent", "rust"]
    raw = layout.load(layout.items("train")[1], layout.class_names(), 1)
    assert raw.classes.tolist() == [0, 1] and raw.image.shape == (64, 64)
    assert layout.masked_classes() == set()

"""Parameter counts of the detection path against YOLOv5n and YOLOv5s."""
import json
import subprocess
import sys

import pytest

from inspectd.model.config import load_preset
from inspectd.model.info import count, model_info
from inspectd.model.network import build_model

# YOLOv5 v6.0 README: YOLOv5n 1.9M and YOLOv5s 7.2M parameters (COCO: 80 classes, RGB input).
REFERENCE = {"n": 1.9e6, "s": 7.2e6}


@pytest.mark.parametrize("preset", ["n", "s"])
def test_detection_path_matches_yolov5(preset):
    # Compared like for like: 80 classes and 3 input channels, as the published models; the
    # detection path is encoder (backbone + FPN) + PAN + detect head, i.e. the whole YOLOv5.
    cfg = load_preset(preset).replace(class_names=[f"c{i}" for i in range(80)], in_channels=3)
    model = build_model(cfg)
    det = count([model.encoder, model.pan, model.det_head])
    assert abs(det - REFERENCE[preset]) / REFERENCE[preset] < 0.05
    # Exactly the counts ultralytics prints for yolov5n.yaml / yolov5s.yaml (v6.0).
    assert det == {"n": 1_872_157, "s": 7_235_389}[preset]


def test_info_splits_paths():
    info = model_info(build_model(load_preset("n")))
    assert info.params_detection + info.params_segmentation - info.params_encoder == info.params_inference
    assert info.params_total == info.params_inference + info.params_aux
    assert 0.5 < info.gflops < 5


def test_model_info_command_json():
    out = subprocess.run([sys.executable, "-m", "inspectd.cli", "model-info", "--preset", "s",
                          "--input", "256x320", "--json"], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["input_size"] == [256, 320]
    assert info["params_detection"] > 6e6
    assert info["gflops"] > 1


def test_model_info_bad_input_is_one_line():
    out = subprocess.run([sys.executable, "-m", "inspectd.cli", "model-info", "--input", "250x320"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "input_size" in out.stderr

"""``inspectd evaluate`` end to end on four real NEU validation images with an untrained model."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inspectd.cli import main

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = [Path(os.environ.get("INSPECTD_NEU_DATA", "/nonexistent")), REPO / "shared" / "data" / "neu",
              REPO.parent / "shared" / "data" / "neu"]
NEU = next((p for p in CANDIDATES if (p / "val.txt").is_file()), None)
# A box-only class (crazing) and one masked image of each class with masks.
STEMS = ["crazing_108", "inclusion_234", "patches_1", "scratches_1"]

needs_neu = pytest.mark.skipif(NEU is None, reason="NEU data folder not found (set INSPECTD_NEU_DATA)")


def test_score_batch_crops_padding_and_clips_boxes():
    import torch

    from inspectd.evaluation import score_batch
    from inspectd.metrics.detection import DetectionEvaluator
    from inspectd.metrics.segmentation import ConfusionMatrix

    # One 6 x 5 (h x w) image on an 8 x 8 canvas. The prediction says class 1 everywhere on the
    # padding and the truth there is ignore (255) anyway; a wrong label on the padding must not count.
    seg_true = torch.full((1, 8, 8), 255, dtype=torch.long)
    seg_true[0, :6, :5] = 0
    seg_true[0, 0, 0] = 1
    scores = torch.zeros(1, 2, 8, 8)
    scores[0, 1] = 1.0  # class 1 everywhere...
    scores[0, 0, :6, :5] = 2.0  # ...but background on the image
    scores[0, 1, 0, 0] = 3.0
    seg_true[0, 7, 7] = 0  # a (wrong) target in the padding: outside `valid`, so not scored
    batch = {"seg": seg_true, "valid": [(6, 5)], "boxes": [torch.tensor([[1.0, 1.0, 5.0, 6.0]])],
             "classes": [torch.tensor([0])]}
    # The detection spills into the padding; clipped to the image it is the ground-truth box.
    dets = [torch.tensor([[1.0, 1.0, 7.5, 8.0, 0.9, 0.0]])]
    ev, cm = DetectionEvaluator(["a"]), ConfusionMatrix(["background", "x"])
    score_batch(ev, cm, dets, scores, batch)
    assert cm.matrix.tolist() == [[29, 0], [0, 1]]
    assert ev.compute().ap[0].tolist() == [1.0] * 10  # IoU 1 after clipping (20 / 45.5 = 0.44 before)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """A NEU-style folder holding four validation stems, and a tiny untrained checkpoint."""
    root = tmp_path_factory.mktemp("neu")
    val = set(NEU.joinpath("val.txt").read_text().split())
    stems = [s for s in STEMS if s in val]
    assert len(stems) == 4, "the chosen stems must be validation stems"
    for sub, ext in (("images", "jpg"), ("annotations", "xml"), ("masks", "png")):
        (root / sub).mkdir()
        for s in stems:
            src = NEU / sub / f"{s}.{ext}"
            if src.exists():
                shutil.copy(src, root / sub / src.name)
    (root / "val.txt").write_text("\n".join(stems) + "\n")

    from inspectd.model.checkpoint import save_checkpoint
    from inspectd.model.config import load_preset
    from inspectd.model.network import build_model

    import torch

    torch.manual_seed(0)
    save_checkpoint(build_model(load_preset("n")), root / "tiny.safetensors")
    return root


@needs_neu
def test_evaluate_writes_table_json_and_plots(small_set, tmp_path):
    out = tmp_path / "val.json"
    plots = tmp_path / "plots"
    cmd = [sys.executable, "-m", "inspectd.cli", "evaluate", "--data", str(small_set), "--split", "val.txt",
           "--model", str(small_set / "tiny.safetensors"), "--json", str(out), "--plots", str(plots),
           "--batch-size", "2", "--threads", "1", "--speed-seconds", "0.05", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr

    table = proc.stdout
    assert "AP@0.5 all-point" in table and "AP@0.5 101-point" in table and "| background" in table
    assert "model forward, batch 1, cpu" in table and "model forward, batch 2, cpu" in table

    d = json.loads(out.read_text())
    classes = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
    seg_classes = ["background", "inclusion", "patches", "scratches"]
    for key in ("map50", "map50_95", "map50_101", "miou"):
        assert 0.0 <= d[key] <= 1.0, key
    assert list(d["ap50"]) == classes and list(d["iou"]) == seg_classes
    assert d["num_gt"]["crazing"] > 0 and d["num_gt"]["pitted_surface"] == 0
    assert d["ap50"]["pitted_surface"] is None  # no boxes of that class in these four images
    assert all(v is None or 0.0 <= v <= 1.0 for v in [*d["ap50"].values(), *d["iou"].values()])
    assert d["num_images"] == 4 and d["info"]["images"] == 4
    # Only the 200 x 200 image region is scored, and pixels of unknown truth are left out.
    pixels = sum(map(sum, d["confusion_matrix"]["pixels"]))
    assert 0 < pixels < 4 * 200 * 200
    assert d["iou"]["patches"] is not None and d["map50_interpolation"] == "all-point"
    assert set(d["speed_fps"]) == {"model forward, batch 1, cpu", "model forward, batch 2, cpu"}
    assert all(v > 0 for v in d["speed_fps"].values())
    for name in ("pr_curves.png", "confusion_matrix.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run_cli(argv, capsys):
    code = main(["evaluate", *argv])
    return code, capsys.readouterr().err.strip()


@needs_neu
def test_bad_inputs_fail_with_one_line(small_set, tmp_path, capsys):
    model = str(small_set / "tiny.safetensors")
    code, err = _run_cli(["--data", str(tmp_path / "nope"), "--split", "val.txt", "--model", model], capsys)
    assert code == 2 and "nope" in err and "not found" in err and "\n" not in err

    code, err = _run_cli(["--data", str(small_set), "--split", "test.txt", "--model", model], capsys)
    assert code == 2 and "test.txt" in err and "\n" not in err

    broken = tmp_path / "broken"
    shutil.copytree(small_set, broken)
    (broken / "images" / "patches_1.jpg").unlink()
    code, err = _run_cli(["--data", str(broken), "--split", "val.txt", "--model", model, "--threads", "1"], capsys)
    assert code == 2 and "patches_1" in err and "\n" not in err

    (broken / "images" / "patches_1.jpg").write_bytes((small_set / "images" / "patches_1.jpg").read_bytes())
    (broken / "annotations" / "inclusion_234.xml").unlink()
    code, err = _run_cli(["--data", str(broken), "--split", "val.txt", "--model", model, "--threads", "1"], capsys)
    assert code == 2 and "inclusion_234" in err and "\n" not in err

    code, err = _run_cli(["--data", str(small_set), "--split", "val.txt", "--model", str(tmp_path / "x.pt")], capsys)
    assert code == 2 and "x.pt" in err

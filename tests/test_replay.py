"""`inspectd replay` as a user runs it: a subprocess, real recordings, a real model file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspectd.model import default_model_path
from stand_ins import tiny_checkpoint, write_video

ROOT = Path(__file__).resolve().parents[1]
# shared/data/neu beside the repository (absent in a bare clone: the tests that need it skip).
NEU = next((p for p in (ROOT.parent / "shared" / "data" / "neu", Path("/work/shared/data/neu"))
            if (p / "images").is_dir()), None)
INSPECTD = [sys.executable, "-m", "inspectd.cli"]
ENV = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "INSPECTD_DEBUG")}


def _replay(*args, timeout=300, env=None):
    return subprocess.run([*INSPECTD, "replay", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or ENV, cwd=ROOT)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _events(stderr: str) -> list[dict]:
    out = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[Path, dict | None]:
    """A recording made by the acquisition engineer's helper from NEU validation images,
    with its ground truth; without the NEU data, a synthetic one without ground truth."""
    if NEU is None:
        out = tmp_path_factory.mktemp("rec") / "strip.avi"
        write_video(out, 6, size=(600, 200))
        return out, None
    sys.path.insert(0, str(ROOT / "pipelines"))
    from make_sample_recording import make_recording
    stems = [s for s in (NEU / "val.txt").read_text().split() if s]
    by_class: dict[str, list[str]] = {}
    for s in stems:
        by_class.setdefault(s.rsplit("_", 1)[0], []).append(s)
    chosen = [s for c in sorted(by_class) for s in by_class[c][:3]]      # 18 images, 3 per class
    rng = np.random.default_rng(1)
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]
    out = tmp_path_factory.mktemp("rec") / "strip.mkv"
    truth = make_recording(out, chosen, NEU, across=3, frame_height=200, advance=200, fps=25.0)
    return out, truth


def test_one_verdict_per_frame_in_order(tmp_path, model, recording):
    video, truth = recording
    out = tmp_path / "v.jsonl"
    ann = tmp_path / "a.mp4"
    r = _replay(video, "--model", model, "--out", out, "--annotate", ann, "--show", "all")
    assert r.returncode == 0, r.stderr
    rows = _lines(out)
    n = truth["frames"] if truth else 6
    shown = [line for line in r.stderr.splitlines() if line.startswith("frame ")]
    assert [line.split(":")[0] for line in shown] == [f"frame {i}" for i in range(n)]
    assert [line.split(": ")[1].split()[0] for line in shown] == [v["status"].upper() for v in rows]
    assert [v["frame"] for v in rows] == list(range(n))
    assert all(v["kind"] == "verdict" and v["schema"] >= 1 and v["camera"] == "cam0" for v in rows)
    assert all(v["status"] in ("ok", "reject") and isinstance(v["defects"], list) for v in rows)
    seqs = [v["seq"] for v in rows]
    assert seqs == sorted(set(seqs))
    import jsonschema

    from inspectd.bus.messages import load_schema
    validator = jsonschema.Draft202012Validator(load_schema())
    for v in rows:
        validator.validate(v)                  # the --out line is the wire payload
    assert f"{n} frames inspected" in r.stderr and "0 uninspected" in r.stderr
    cap = cv2.VideoCapture(str(ann))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == n


def test_folder_replay_and_realtime_pacing(tmp_path, model):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), np.full((200, 300), 80 + i, np.uint8))
    out = tmp_path / "v.jsonl"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source: {fps: 10.0}\n")
    r = _replay(folder, "--model", model, "--out", out, "--realtime", "--config", cfg)
    assert r.returncode == 0, r.stderr
    rows = _lines(out)
    assert [v["frame"] for v in rows] == list(range(6)) and rows[0]["width"] == 300
    # Paced at 10 frames/s: captures are at least (about) 0.1 s apart, never a burst.
    t = [v["capture_wall_ns"] for v in rows]
    assert min(b - a for a, b in zip(t, t[1:])) >= 0.08e9


def test_out_to_stdout_and_loop_is_stopped_by_sigint(tmp_path, model):
    video = tmp_path / "v.avi"
    write_video(video, 4, size=(200, 200))
    p = subprocess.Popen([*INSPECTD, "replay", str(video), "--model", str(model), "--out", "-", "--loop"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    frames = []
    for line in p.stdout:                 # verdicts stream out while it runs
        frames.append(json.loads(line)["frame"])
        if len(frames) == 10:
            p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    assert p.returncode == 0, p.stderr.read()
    assert frames[:10] == list(range(10))         # looping keeps counting frame indices
    assert frames == list(range(len(frames)))


def test_publish_reaches_a_subscriber(tmp_path, model):
    import zmq
    video = tmp_path / "v.avi"
    write_video(video, 4, size=(200, 200))
    address = f"ipc://{tmp_path}/bus"
    p = subprocess.Popen([*INSPECTD, "replay", str(video), "--model", str(model), "--loop", "--publish", address],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 120_000)
    sub.connect(address)
    try:
        kinds = set()
        while "verdict" not in kinds:
            parts = sub.recv_multipart()
            msg = json.loads(parts[1])
            kinds.add(msg["kind"])
        assert msg["camera"] == "cam0" and msg["status"] in ("ok", "reject")
    finally:
        sub.close(0)
        ctx.term()
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=120)
    assert p.returncode == 0


def test_sigterm_exits_zero_with_every_inspected_frame_written(tmp_path, model):
    video = tmp_path / "long.avi"
    write_video(video, 400, size=(200, 200))
    out = tmp_path / "v.jsonl"
    p = subprocess.Popen([*INSPECTD, "replay", str(video), "--model", str(model), "--out", str(out),
                          "--log-format", "json", "--log-level", "info"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    deadline = time.monotonic() + 240
    partial = out.with_name(out.name + ".partial")     # its name until the replay ends
    while time.monotonic() < deadline and p.poll() is None:
        if partial.exists() and partial.read_text().count("\n") >= 5:
            break
        time.sleep(0.05)        # another process's file: polling is the only way to see it grow
    assert p.poll() is None, p.communicate()[1]
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    stopped = [e for e in _events(err) if e.get("event") == "pipeline_stopped"]
    assert len(stopped) == 1, err
    c = stopped[0]
    assert c["reason"] == "signal" and c["frames_accounted"] is True
    rows = _lines(out)
    assert not partial.exists()
    assert len(rows) == c["inspected"] >= 5
    assert [v["frame"] for v in rows] == list(range(len(rows)))
    assert c["captured"] == c["inspected"] + c["uninspected"] < 400
    assert "Traceback" not in err


def test_replay_speaks_sd_notify(tmp_path, model):
    from notify_listener import NotifyListener
    video = tmp_path / "v.avi"
    write_video(video, 6, size=(200, 200))
    lst = NotifyListener(path=str(tmp_path / "notify.sock"))
    try:
        r = _replay(video, "--model", model, env=lst.env())
        assert r.returncode == 0, r.stderr
        assert lst.wait_for(lambda m: m and "STOPPING" in m[-1], timeout=30)
    finally:
        lst.close()
    kinds = [next(k for k in ("READY", "STOPPING", "WATCHDOG", "STATUS") if k in m) for m in lst.messages]
    assert kinds[0] == "READY" and kinds[-1] == "STOPPING" and kinds.count("READY") == 1


def _one_error_line(r: subprocess.CompletedProcess, *needles: str, code: int = 2) -> None:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inspectd: "), r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_errors_are_one_line(tmp_path, model):
    video = tmp_path / "ok.avi"
    write_video(video, 3, size=(200, 200))
    _one_error_line(_replay(tmp_path / "missing.avi", "--model", model), "missing.avi", "not found")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    _one_error_line(_replay(garbage, "--model", model), "garbage.avi")
    # A wrong model is configuration (78) whatever names it; the line names --model.
    _one_error_line(_replay(video, "--model", tmp_path / "none.safetensors"), "none.safetensors", "not found",
                    code=78)
    not_a_model = tmp_path / "junk.safetensors"
    not_a_model.write_bytes(b"\x00" * 100)
    _one_error_line(_replay(video, "--model", not_a_model), "--model", "junk.safetensors", code=78)
    from inspectd.model.checkpoint import save_checkpoint
    from inspectd.model.config import load_preset
    from inspectd.model.network import build_model
    other = save_checkpoint(build_model(load_preset("n").replace(class_names=["rust", "dent"])).eval(),
                            tmp_path / "other.safetensors")
    # A model of other classes runs (merge.default judges them); a rule naming a class the model
    # lacks is refused naming both (blamed on --model, which chose the model: status 78).
    rules = tmp_path / "rules.yaml"
    rules.write_text("merge: {rules: {crazing: {reject_score: 0.5}}}\n")
    _one_error_line(_replay(video, "--model", other, "--config", rules), "rules.crazing", "rust, dent", code=78)
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("ring: {slots: -3}\n")
    _one_error_line(_replay(video, "--model", model, "--config", bad_cfg), str(bad_cfg), "ring.slots",
                    code=78)                  # EX_CONFIG: an invalid config file
    _one_error_line(_replay(video, "--model", model, "--annotate", tmp_path / "x.gif"), "x.gif")


def test_truncated_video_mid_replay(tmp_path, model):
    """The recording breaks off: what was read is inspected, the frames it could not deliver are
    published as uninspected (corrupt), not forgotten; one warning names the file."""
    full = tmp_path / "full.avi"
    write_video(full, 60, size=(200, 200))
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "v.jsonl"
    r = _replay(cut, "--model", model, "--out", out, "--log-format", "json")
    assert r.returncode == 0, r.stderr
    warned = [e for e in _events(r.stderr) if e.get("event") == "frames_corrupt"]
    assert warned and all("cut.avi" in e["detail"] for e in warned)
    assert r.stderr.count("truncated or corrupt") == 1
    rows = _lines(out)
    assert 10 <= len(rows) < 60 and [v["frame"] for v in rows] == list(range(len(rows)))
    assert f"{len(rows)} frames inspected" in r.stderr and f"{60 - len(rows)} uninspected" in r.stderr
    assert f"uninspected: corrupt {60 - len(rows)}" in r.stderr and "Traceback" not in r.stderr


def test_help():
    for cmd in ("replay", "run", "check-config"):
        r = subprocess.run([*INSPECTD, cmd, "--help"], capture_output=True, text=True, timeout=60, env=ENV)
        assert r.returncode == 0 and "usage: inspectd " + cmd in r.stdout
    r = subprocess.run([*INSPECTD, "replay", "--help"], capture_output=True, text=True, timeout=60, env=ENV)
    assert "block" in r.stdout and "--realtime" in r.stdout and "--annotate" in r.stdout


# -- with the shipped model: the verdicts must be right, not only well-formed -----------
# INSPECTD_TEST_MODEL=CKPT runs these against another checkpoint (e.g. a training run's best).
TRAINED = Path(os.environ["INSPECTD_TEST_MODEL"]) if os.environ.get("INSPECTD_TEST_MODEL") else default_model_path()
needs_trained = pytest.mark.skipif(not TRAINED.is_file(), reason="the shipped model is not there yet")

def _match(defect: dict, gt: dict) -> bool:
    if defect["class"] != gt["class"]:
        return False
    ax1, ay1, ax2, ay2 = defect["box"]
    bx1, by1, bx2, by2 = gt["box"]
    iw, ih = max(0.0, min(ax2, bx2) - max(ax1, bx1)), max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return union > 0 and inter / union >= 0.3


@needs_trained
def test_shipped_model_finds_ground_truth_defects(tmp_path, recording):
    video, truth = recording
    if truth is None:
        pytest.skip("shared/data/neu not found beside the repository")
    out = tmp_path / "v.jsonl"
    r = _replay(video, "--out", out, "--model", TRAINED)
    assert r.returncode == 0, r.stderr
    rows = _lines(out)
    assert [v["frame"] for v in rows] == list(range(truth["frames"]))
    gts = [(ft["frame"], b) for ft in truth["frames_truth"] for b in ft["boxes"]]
    found = sum(any(_match(d, b) for d in rows[f]["defects"]) for f, b in gts)
    rejects = sum(v["status"] == "reject" for v in rows)
    assert found >= 0.5 * len(gts), f"only {found} of {len(gts)} ground-truth boxes found ({rejects} rejects)"
    # Every frame of this recording holds defects of several classes. Crazing is the model's
    # weakest class (the paper's AP 50): a frame of mostly crazing may pass; most must not.
    assert rejects >= 0.8 * len(rows), f"{len(rows) - rejects} of {len(rows)} defective frames passed as ok"


@needs_trained
def test_shipped_model_passes_clean_strip(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):
        img = cv2.GaussianBlur(rng.normal(128, 6, (200, 600)).astype(np.float32), (0, 0), 2)
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.clip(img, 0, 255).astype(np.uint8))
    out = tmp_path / "v.jsonl"
    r = _replay(folder, "--out", out, "--model", TRAINED)
    assert r.returncode == 0, r.stderr
    rows = _lines(out)
    assert len(rows) == 6
    assert sum(v["status"] == "ok" for v in rows) >= 5

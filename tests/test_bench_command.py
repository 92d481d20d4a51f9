"""`inspectd bench` end to end on a tiny run: real recording, real pipeline, real subscriber
process on a tcp://127.0.0.1 socket. Checks the figures are consistent, never how fast."""
from __future__ import annotations

import json

import pytest
from lively_model import lively_model

from inspectd.cli import main
from inspectd.model.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, _ = lively_model()
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "lively.safetensors")


def test_bench_tiny_run(tmp_path, checkpoint, monkeypatch, capsys):
    monkeypatch.setenv("INSPECTD_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", str(checkpoint), "--frames", "8", "--frame-size", "200x260",
                 "--backends", "torch,onnxruntime,torch-cuda", "--pipeline-backend", "onnxruntime",
                 "--rate", "50", "--threads", "1", "--json", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "| model alone | onnxruntime |" in stdout and "| full pipeline, unpaced |" in stdout
    r = json.loads(out.read_text())

    assert r["frames"]["count"] == 8 and r["frames"]["tiles_per_frame"] == 2      # 200x260 -> 1 x 2 tiles
    assert r["model"]["path"] == str(checkpoint) and r["model"]["random_weights"] is False
    for name in ("torch", "onnxruntime"):
        b = r["backends"][name]
        assert b["available"] and b["frames"] == 8 and b["tiles"] == 16
        assert b["frames_per_s"] > 0 and b["tiles_per_s"] == pytest.approx(2 * b["frames_per_s"], rel=0.01)
        assert 0 < b["ms_per_frame"]["p50"] <= b["ms_per_frame"]["p99"] <= b["ms_per_frame"]["max"]
        assert b["peak_rss_mb"] > 0 and b["other_processes_cpu_cores"] >= 0
    cuda = r["backends"]["torch-cuda"]
    import torch
    if not torch.cuda.is_available():
        assert cuda["available"] is False and "CUDA" in cuda["reason"]
        assert "unavailable" in stdout

    assert r["pipeline_backend"] == "onnxruntime"
    assert r["stage"]["frames"] == 8
    assert 0 < r["stage"]["model_ms_in_stage"]["mean"] <= r["stage"]["ms_per_frame"]["mean"]
    for run in (r["pipeline"], r["paced"]):
        assert run["frames_requested"] == 8
        assert run["frames"] + run["uninspected"] == 8            # every frame accounted for
        assert run["frames"] == run["inspected"] and run["gaps"] == 0 and run["in_order"]
        lat = run["capture_to_publish_ms"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
        assert run["capture_to_receipt_ms"]["p50"] >= lat["p50"] * 0.999 - 0.01
        # the model call is part of the stage, which is part of capture-to-publish
        assert 0 < run["model_ms_in_pipeline"]["mean"] <= run["stage_ms_in_pipeline"]["mean"] <= lat["mean"]
    p = r["pipeline"]
    assert p["frames"] == 8 and p["uninspected"] == 0            # policy block: nothing dropped
    assert r["paced"]["paced_fps"] == 50
    ref = r["model_reference"]
    assert ref["frames_per_s_before"] == r["backends"]["onnxruntime"]["frames_per_s"]
    model_fps = ref["frames_per_s"]
    assert model_fps == pytest.approx((ref["frames_per_s_before"] + ref["frames_per_s_after"]) / 2, rel=1e-3)
    assert p["ratio_to_model"] == pytest.approx(p["frames_per_s"] / model_fps, rel=1e-3)
    names = [t["name"] for t in r["targets"]]
    assert len(names) == 3 and all(isinstance(t["met"], bool) for t in r["targets"])
    # Where the CPU went, by thread (10 ms clock ticks: on 8 frames only the busy threads show):
    # the model runs on its own thread while the inference thread post-processes.
    assert r["in_flight"] == 2
    by = p["cpu_s_by_thread"]
    assert {"inference", "model"} <= set(by), by
    assert all(v > 0 for v in by.values())
    assert "CPU per frame, by thread" in stdout


def test_bench_in_flight_and_streams_options(tmp_path, checkpoint, monkeypatch, capsys):
    pytest.importorskip("openvino")
    monkeypatch.setenv("INSPECTD_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", str(checkpoint), "--frames", "6", "--backends", "openvino",
                 "--rate", "0", "--in-flight", "2", "--streams", "2", "--json", str(out)])
    assert code == 0
    r = json.loads(out.read_text())
    assert r["in_flight"] == 2 and r["openvino_streams"] == 2
    assert r["backends"]["openvino"]["concurrent_calls"] == 2       # the model alone kept 2 calls going
    assert r["pipeline"]["frames"] == 6 and r["pipeline"]["in_order"]
    assert main(["bench", "--frames", "2", "--in-flight", "1", "--streams", "2"]) == 2
    assert "--streams 2" in capsys.readouterr().err


def test_bench_rejects_unknown_backend(capsys):
    assert main(["bench", "--backends", "torch,tensorrt", "--frames", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown backend 'tensorrt'" in err[0]


def test_bench_rejects_bad_frame_size(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--frame-size", "200by200"])
    assert exc.value.code == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


def test_bench_camera_mode_tiny_run(tmp_path, checkpoint, capsys):
    """Camera mode on viky: a recording of the camera's own frames, then the live camera; the
    figures are consistent (a 10 frames/s camera is slower than any model: every frame inspected)."""
    pytest.importorskip("genicam")
    out = tmp_path / "camera.json"
    code = main(["bench", "--model", str(checkpoint), "--camera-fps", "10", "--camera-seconds", "2",
                 "--frames", "12", "--pipeline-backend", "torch", "--threads", "1", "--json", str(out)])
    assert code == 0
    assert "| live viky at 10 frames/s" in capsys.readouterr().out
    r = json.loads(out.read_text())
    rec = r["recording"]
    assert rec["captured"] == rec["inspected"] == 12 and rec["in_order"] and rec["inspected_per_s"] > 0
    (cam,) = r["camera"]
    assert cam["camera_fps_set"] == 10 and cam["in_order"]
    assert cam["captured"] == cam["inspected"] + cam["uninspected"] and cam["inspected"] >= 10
    assert cam["captured_per_s"] == pytest.approx(10, rel=0.2)
    assert cam["camera_faster_than_model"] is (cam["captured_per_s"] > rec["inspected_per_s"])
    assert cam["ratio_to_recording"] == pytest.approx(cam["inspected_per_s"] / rec["inspected_per_s"], rel=1e-3)


def test_bench_camera_rates_are_checked(capsys):
    assert main(["bench", "--camera-fps", "fast"]) == 2
    assert "--camera-fps fast: 'fast' is neither a number nor 'max'" in capsys.readouterr().err

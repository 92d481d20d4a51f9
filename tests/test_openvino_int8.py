"""int8 for the OpenVINO backend (NNCF post-training quantisation): built into the model cache,
found there by ``inference.precision: int8``, refused in one line before it is built.
The quantisation test is skipped without nncf (an optional extra: inspectd[int8])."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openvino")

from lively_model import lively_model  # noqa: E402

from inspectd.backends.onnx_model import prepare  # noqa: E402
from inspectd.backends.openvino_backend import OpenVinoBackend, create  # noqa: E402
from inspectd.backends.openvino_int8 import int8_ir_path, quantize_openvino  # noqa: E402
from inspectd.errors import InspectdError  # noqa: E402
from inspectd.model.checkpoint import save_checkpoint  # noqa: E402
from inspectd.runtime.inference import InferenceConfig  # noqa: E402


@pytest.fixture()
def ckpt(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTD_CACHE_DIR", str(tmp_path / "cache"))
    return save_checkpoint(lively_model()[0], tmp_path / "lively.safetensors")


def test_int8_before_it_is_built_is_one_line_naming_the_command(ckpt):
    with pytest.raises(InspectdError, match=r"inference.precision: int8 needs .*inspectd export --int8"):
        create(ckpt, InferenceConfig(model=ckpt, backend="openvino", precision="int8"))


def test_quantised_model_is_found_by_the_config_and_agrees_with_fp32(tmp_path, monkeypatch):
    """The shipped model, calibrated on strip images of the sample recording, checked on others
    (a random-weight model is no test of quantisation: its outputs sit near ties)."""
    pytest.importorskip("nncf")
    import openvino as ov

    from inspectd.bench import _texture_pool
    from inspectd.model import default_model_path

    monkeypatch.setenv("INSPECTD_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = default_model_path()
    fp32 = prepare(ckpt)
    pool = _texture_pool()
    tiles = np.stack([pool[i % len(pool)][None, 17 * i:17 * i + 224, 23 * i:23 * i + 224] for i in range(12)])
    ir = quantize_openvino(fp32, tiles[:8], int8_ir_path(ckpt))
    ops = {op.get_type_name() for op in ov.Core().read_model(str(ir)).get_ops()}
    assert "FakeQuantize" in ops                    # really quantised
    backend = create(ckpt, InferenceConfig(model=ckpt, backend="openvino", precision="int8"))
    ref = OpenVinoBackend(fp32, threads=1)
    try:
        assert backend.precision == "int8"
        det, labels, conf = backend.infer_labels(tiles[8:])       # tiles it was not calibrated on
        det_r, labels_r, conf_r = ref.infer_labels(tiles[8:])
        assert det.shape == det_r.shape and np.isfinite(det).all() and np.isfinite(conf).all()
        assert (labels == labels_r).mean() >= 0.97
        assert np.abs(det[..., 4] - det_r[..., 4]).mean() < 0.01    # objectness (8 calibration tiles: the max moves more)
        det1, seg1 = backend.infer(tiles[:1])                    # another batch size, the prob outputs
        assert det1.shape[0] == 1 and np.allclose(seg1.sum(1), 1, atol=1e-2)
    finally:
        backend.close()
        ref.close()


def test_export_int8_usage_errors(tmp_path, capsys):
    from inspectd.cli import main

    assert main(["export"]) == 2
    assert "--out: required" in capsys.readouterr().err
    assert main(["export", "--int8"]) == 2
    assert "--int8: needs --calib-data" in capsys.readouterr().err
    assert main(["export", "--int8", "--calib-data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no train.txt there" in err[0]

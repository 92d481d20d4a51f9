"""check-config makes every check `run` makes short of the camera and the socket, with the same
code: a config it passes does not fail at start, and one it refuses, `run` refuses alike (78)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from stand_ins import tiny_checkpoint, write_video

from inspectd.cli import main


def _viky() -> Path | None:
    try:
        import genicam
    except ImportError:
        return None
    cti = Path(genicam.__file__).parent / "viky.cti"
    return cti if cti.is_file() else None


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("check")
    write_video(d / "v.avi", 3, size=(200, 200))
    model = tiny_checkpoint(d / "m.safetensors")
    # Metadata that does not describe the weights: the header says 3 input channels.
    meta_path = d / "lying.safetensors"
    from safetensors import safe_open
    with safe_open(str(model), framework="pt") as f:
        meta = dict(f.metadata())
    cfg = json.loads(meta["model_config"])
    cfg["in_channels"] = 3
    meta["model_config"] = json.dumps(cfg)
    save_file(load_file(str(model)), str(meta_path), metadata=meta)
    # Weights that load but compute nothing: only the start-up self-test can tell.
    with safe_open(str(model), framework="pt") as f:
        meta = dict(f.metadata())
    save_file({k: torch.zeros_like(v) for k, v in load_file(str(model)).items()}, str(d / "zeroed.safetensors"),
              metadata=meta)
    # A model of other classes than the config's rules know.
    from inspectd.model.checkpoint import save_checkpoint
    from inspectd.model.config import load_preset
    from inspectd.model.network import build_model
    torch.manual_seed(0)
    save_checkpoint(build_model(load_preset("n").replace(class_names=["rust", "dent"])).eval(), d / "other.safetensors")
    (d / "fake.cti").write_text("not a library")
    return {"dir": d, "video": d / "v.avi", "model": model, "lying": meta_path, "other": d / "other.safetensors",
            "zeroed": d / "zeroed.safetensors",
            "fake_cti": d / "fake.cti"}


BAD = [
    # (config text, what the one line must say); {model}, {video}, ... are the files above
    ("source: {{path: {video}}}\ninference: {{model: {model}, tile_overlap_px: 224}}\n",
     "inference.tile_overlap_px: 224 must be less than the model input size 224x224"),
    ("source: {{path: {video}}}\ninference: {{model: {lying}}}\n", "inference.model: "),
    ("source: {{path: {video}}}\ninference: {{model: {other}}}\nmerge: {{rules: {{crazing: {{evidence: detection}}}}}}\n",
     "merge: rules.crazing"),                     # a rule for a class the model (rust, dent) lacks
    ("source: {{path: {video}}}\ninference: {{model: {model}}}\n"
     "merge: {{rules: {{crazing: {{evidence: segmentation}}}}}}\n", "merge: rules.crazing.evidence"),
    ("source: {{path: {dir}/gone.avi}}\ninference: {{model: {model}}}\n", "source.path: "),
    ("source: {{path: {video}}}\ninference: {{model: {zeroed}}}\n", "self-test failed"),
    ("source: {{path: {video}}}\ninference: {{model: {dir}/gone.safetensors}}\n", "gone.safetensors not found"),
    ("source: {{kind: genicam, genicam: {{cti: [{dir}/none.cti]}}}}\ninference: {{model: {model}}}\n",
     "none.cti: not found"),
    ("source: {{kind: genicam, genicam: {{cti: [{fake_cti}]}}}}\ninference: {{model: {model}}}\n",
     "fake.cti: cannot be loaded"),
    ("source: {{path: {video}}}\ninference: {{model: {model}}}\nring: {{slots: 1000000000}}\n",
     "ring.slots: 1000000000 slots x 40000 bytes (200 x 200 uint8 frames)"),
    ("source: {{kind: genicam, genicam: {{cti: [{viky}], width: 2048, height: 2048}}}}\n"
     "inference: {{model: {model}}}\nring: {{slots: 2000000}}\n", "ring.slots: 2000000 slots x 4194304 bytes"),
    ("source: {{path: {video}}}\ninference: {{model: {model}}}\nring:\n  slots: 4\n  slots: 8\n",
     "ring.slots: given twice, at line 4 and line 5"),
    ("source: {{path: {video}}}\ninference: {{model: {model}}}\n"
     "bus: {{curve: {{server_secret_key: {dir}/s.key_secret, allowed_clients_dir: {dir}}}}}\n",
     "bus.curve.server_secret_key"),
]
if not torch.cuda.is_available():
    BAD.append(("source: {{path: {video}}}\ninference: {{model: {model}, device: cuda}}\n",
                "inference.device: cuda requested but no CUDA device is available"))


def _write(files, tmp_path, text) -> Path:
    f = tmp_path / "c.yaml"
    # torch: the quickest to load a fresh model (the others export it first); the checks are the same
    text = text.replace("inference: {{model:", "inference: {{backend: torch, model:")
    f.write_text(text.format(viky=_viky() or "/nonexistent/viky.cti", **files))
    return f


@pytest.mark.parametrize("text,needle", BAD, ids=[n.split(":")[0][:40] for _, n in BAD])
def test_check_config_and_run_refuse_alike(files, tmp_path, capsys, text, needle):
    if "{viky}" in text and _viky() is None:
        pytest.skip("viky.cti is not installed")
    f = _write(files, tmp_path, text)
    assert main(["check-config", str(f)]) == 78
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"inspectd: {f}: ") and needle in err, err
    # `run` stops at the same check, with the same line and status, before it starts anything.
    assert main(["run", "--config", str(f), "--log-format", "console"]) == 78
    _, err_run = capsys.readouterr()
    same = lambda line: re.sub(r"[\d.]+ GB of memory", "GB of memory", line)  # noqa: E731 - free memory moves
    assert same(err_run.strip().splitlines()[-1]) == same(err.strip())


def test_options_for_config_keys_are_configuration_named_by_the_option(files, tmp_path, capsys):
    """A wrong model named by --model is a configuration error (78) whose line names --model;
    a command's own argument (replay FILE) is a usage error (2)."""
    f = _write(files, tmp_path, "source: {{path: {video}}}\ninference: {{backend: torch}}\n")
    assert main(["run", "--config", str(f), "--model", str(files["lying"])]) == 78
    err = capsys.readouterr().err.strip().splitlines()[-1]       # after the log lines
    assert err.startswith(f"inspectd: --model {files['lying']}: ") and "weight" in err, err
    assert main(["replay", str(files["dir"] / "gone.avi")]) == 2
    assert main(["replay", str(files["video"]), "--model", str(files["lying"])]) == 78
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"inspectd: --model {files['lying']}: ")


def test_good_config_passes_and_reports_what_was_checked(files, tmp_path, capsys):
    f = _write(files, tmp_path, "source: {{path: {video}}}\ninference: {{model: {model}, device: cpu}}\n")
    assert main(["check-config", str(f)]) == 0
    out = capsys.readouterr().out
    assert "200x200 Mono8" in out and "224x224 tiles" in out and "ring: 8 slots" in out


@pytest.mark.skipif(_viky() is None, reason="viky.cti is not installed")
def test_camera_config_is_checked_without_opening_the_camera(files, tmp_path, capsys):
    # serial 99 does not exist: only opening the camera could tell, which check-config does not do
    f = _write(files, tmp_path, "source: {{kind: genicam, genicam: {{cti: [{viky}], serial: '99'}}}}\n"
               "inference: {{model: {model}, device: cpu}}\n")
    assert main(["check-config", str(f)]) == 0
    assert "(not opened)" in capsys.readouterr().out
    # run opens it and does not find it: a failure at run time (1, retried by systemd), not 78
    assert main(["run", "--config", str(f), "--log-format", "console"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("inspectd: ") and "99" in err, err


def test_an_empty_file_names_no_source(tmp_path, capsys):
    """docs/config.md: an empty file loads as the defaults, but names no source: refused (78)."""
    f = tmp_path / "empty.yaml"
    f.write_text("")
    assert main(["check-config", str(f)]) == 78
    assert capsys.readouterr().err.strip() == f"inspectd: {f}: source.path: required for kind 'video'"
    text = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    assert "an empty file is a valid config" not in " ".join(text.split())


def test_exit_status_rule_is_documented_and_in_every_help(capsys):
    """docs/cli.md, README and each command's --help state the same rule as inspectd.errors."""
    from inspectd.cli import COMMANDS
    from inspectd.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "cli.md").read_text()
    for status in (EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIG):
        assert f"\n| {status} |" in doc
    assert "docs/cli.md" in (root / "README.md").read_text()
    for name, _, _ in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert exc.value.code == 0 and "78 configuration error" in text and "2 usage error" in text \
            and "1 failure at run time" in text, name


def test_an_address_in_use_is_a_failure_at_run_time(files, tmp_path, capsys):
    """check-config does not bind: an address another process holds is found by run, and a
    restart may cure it (1, not 78)."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        f = _write(files, tmp_path, "source: {{path: {video}}}\ninference: {{model: {model}}}\n"
                   f"bus: {{{{publish: 'tcp://127.0.0.1:{port}'}}}}\n")
        assert main(["check-config", str(f)]) == 0
        capsys.readouterr()
        assert main(["run", "--config", str(f), "--log-format", "console"]) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("inspectd: ") and str(port) in err, err
    finally:
        sock.close(0)
        ctx.term()

"""Daemon config: defaults, the shipped config files, one-line errors naming file and key, docs."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from inspectd.config import default_config, load_config
from inspectd.configtools import ConfigError, to_mapping
from inspectd.model import default_model_path
from stand_ins import tiny_checkpoint, write_video

ROOT = Path(__file__).resolve().parents[1]
INSPECTD = [sys.executable, "-m", "inspectd.cli"]


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out


def test_empty_file_is_the_defaults(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("")
    assert to_mapping(load_config(f)) == to_mapping(default_config())
    cfg = default_config()
    for section in ("source", "line", "ring", "inference", "merge", "bus", "log", "service"):
        assert dataclasses.is_dataclass(getattr(cfg, section))


def test_shipped_default_config_differs_only_where_meant():
    cfg = load_config(ROOT / "configs" / "inspectd.yaml")
    assert Path(cfg.source.path) == (ROOT / "samples" / "neu_strip.mkv").resolve()
    assert Path(cfg.source.path).is_file()
    assert cfg.inference.model is None          # the shipped model
    got, want = _flat(to_mapping(cfg)), _flat(to_mapping(default_config()))
    differ = {k for k in want if got[k] != want[k]}
    assert differ == {"source.path", "source.fps", "ring.policy", "log.verdicts",
                      "line.speed_m_per_s", "line.frame_length_m", "control.address"}


def test_sample_line_geometry_matches_the_recording():
    import json
    cfg = load_config(ROOT / "configs" / "inspectd.yaml")
    truth = json.loads((ROOT / "samples" / "neu_strip.mkv.json").read_text())
    assert cfg.line.mm_per_px == truth["mm_per_px"]
    assert cfg.line.frame_length_m == pytest.approx(truth["frame_length_m"])
    assert cfg.line.frame_length_m == pytest.approx(truth["advance_px"] * truth["mm_per_px"] / 1000)
    # The demo runs the line slower than the recording's 9.6 m/s (a 2-core CPU keeps up with it),
    # and replays the frames at that line's rate.
    assert cfg.line.speed_m_per_s < truth["line_speed_mps"]
    assert cfg.source.fps == pytest.approx(cfg.line.speed_m_per_s / cfg.line.frame_length_m)


def test_camera_example_loads():
    cfg = load_config(ROOT / "configs" / "camera-example.yaml")
    assert cfg.source.kind == "genicam" and cfg.camera == "top"
    assert cfg.ring.policy.value == "drop_oldest"


def test_relative_paths_follow_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "c.yaml"
    f.write_text("source: {path: ../video.avi}\ninference: {model: models/m.safetensors}\n"
                 "bus: {curve: {server_secret_key: k.key_secret, allowed_clients_dir: /etc/keys}}\n")
    cfg = load_config(f)
    assert Path(cfg.source.path) == tmp_path / "video.avi"
    assert cfg.inference.model == tmp_path / "sub" / "models" / "m.safetensors"
    assert cfg.bus.curve.server_secret_key == tmp_path / "sub" / "k.key_secret"
    assert cfg.bus.curve.allowed_clients_dir == Path("/etc/keys")


BAD = [
    # (YAML text, the key the message must name)
    ("camra: cam1\n", "camra"),                                   # unknown top-level key (typo)
    ("source: {pth: x.avi}\n", "source.pth"),                     # unknown nested key
    ("ring: {slots: many}\n", "ring.slots"),                      # wrong type
    ("ring: {slots: 0}\n", "ring.slots"),                         # out of range
    ("ring: {policy: drop_some}\n", "ring.policy"),               # not one of the choices
    ("log: {format: xml}\n", "log.format"),
    ("camera: 'top camera'\n", "camera"),                         # not a usable id
    ("service: {shutdown_grace_s: -1}\n", "service.shutdown_grace_s"),
    ("service: {status_interval_s: 0}\n", "service.status_interval_s"),
    ("line: {speed_m_per_s: 0}\n", "line.speed_m_per_s"),
    ("bus: {publish: 'carrier-pigeon://x'}\n", "bus.publish"),
    ("merge: {rules: {'rust/x': {min_score: 0.5}}}\n", "merge.rules.rust/x"),      # not a class name
    ("inference: {conf_threshold: 1.5}\n", "inference.conf_threshold"),
    ("source: {genicam: {pixel_format: Bayer}}\n", "source.genicam.pixel_format"),
    ("source: [a, b]\n", "source"),                               # a list where a section belongs
]


@pytest.mark.parametrize("text,key", BAD, ids=[k for _, k in BAD])
def test_bad_value_names_file_and_key(tmp_path, text, key):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{f}: {key}")


def test_broken_yaml_and_missing_file(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("ring:\n  slots: 4\n policy: block\n")
    with pytest.raises(ConfigError, match=rf"^{f}: not valid YAML at line 3"):
        load_config(f)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text,key,lines", [
    ("ring:\n  slots: 4\n  slots: 400\n", "ring.slots", "line 2 and line 3"),
    ("ring: {slots: 4}\ncamera: a\nring: {policy: block}\n", "ring", "line 1 and line 3"),
    ("merge:\n  rules:\n    scratches: {reject_score: 0.4, reject_score: 0.9}\n",
     "merge.rules.scratches.reject_score", "line 3, columns 17 and 36"),
])
def test_duplicate_key_names_both_lines(tmp_path, text, key, lines):
    f = tmp_path / "dup.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert str(info.value) == f"{f}: {key}: given twice, at {lines} (only one may stay)"


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    f = tmp_path / "merge.yaml"
    f.write_text("merge:\n  rules:\n    inclusion: &strict {reject_score: 0.3}\n"
                 "    patches:\n      <<: *strict\n      min_area_px: 10\n")
    cfg = load_config(f)
    assert cfg.merge.rules["patches"].reject_score == 0.3 == cfg.merge.rules["inclusion"].reject_score


def _check(*args, cwd=ROOT):
    return subprocess.run([*INSPECTD, "check-config", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_check_config_exit_codes(tmp_path):
    video = tmp_path / "v.avi"
    write_video(video, 3)
    bad = tmp_path / "bad.yaml"
    bad.write_text("ring: {slots: 0}\n")
    r = _check(bad)
    assert r.returncode == 78 and r.stdout == ""       # EX_CONFIG: the unit does not restart on it
    assert r.stderr.strip() == f"inspectd: {bad}: ring.slots: must be at least 1, got 0"
    # A good config whose files exist (a tiny untrained checkpoint stands for a model).
    model = tiny_checkpoint(tmp_path / "m.safetensors")
    good = tmp_path / "good.yaml"
    good.write_text(f"source: {{path: v.avi}}\ninference: {{model: {model}}}\n")
    r = _check(good)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "320x240" in r.stdout
    # Files the config names are checked too: missing model, missing and corrupt video.
    for text, needle in [(f"source: {{path: v.avi}}\ninference: {{model: {tmp_path}/none.safetensors}}\n",
                          "none.safetensors not found"),
                         (f"source: {{path: gone.avi}}\ninference: {{model: {model}}}\n", "gone.avi: not found"),
                         (f"source: {{path: {bad}}}\ninference: {{model: {model}}}\n", "cannot be opened")]:
        good.write_text(text)
        r = _check(good)
        assert r.returncode == 78 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _check(tmp_path / "nope.yaml").returncode == 78
    h = subprocess.run([*INSPECTD, "check-config", "--help"], capture_output=True, text=True, timeout=60)
    assert h.returncode == 0 and "No camera is opened" in " ".join(h.stdout.split())


@pytest.mark.skipif(not default_model_path().is_file(), reason="the shipped model is not there yet")
def test_check_config_accepts_the_shipped_config():
    r = _check(ROOT / "configs" / "inspectd.yaml")
    assert r.returncode == 0, r.stderr


def test_config_reference_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "pipelines" / "gen_config_docs.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = (ROOT / "docs" / "config.md").read_text()
    # Every key of every section is documented.
    for key in _flat(to_mapping(default_config())):
        if key.startswith("merge.rules."):
            key = "merge.rules.<name>." + key.split(".", 3)[3]
        section, _, name = key.rpartition(".")
        assert f"| `{name}` |" in text, key

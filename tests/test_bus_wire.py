"""The verdict and defect payloads, written as text from templates (``messages.verdict_wire``,
``defect_wire``), are byte for byte what json writes for the dicts the plain path builds:
compared here against that path, kept as the reference, on many generated verdicts with odd
values (zero, negative zero, tiny, huge, NaN and inf, halfway cases, numpy scalars, strings
that need escaping)."""
from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from inspectd.bus.messages import EventEncoder, encode, topic_for
from inspectd.domain.frames import CoilMark, FrameMeta
from inspectd.domain.placement import DefectPlacement, Placement
from inspectd.domain.verdicts import Defect, Verdict
from inspectd.line import LineConfig


# -- the reference: the dicts as the encoder built them before the text path -------------
def _f(x: Any, digits: int) -> float:
    x = float(x)
    return round(x, digits) if math.isfinite(x) else 0.0


def _m(value: float | None) -> float | None:
    return None if value is None else _f(value, 6)


def _wall(meta: FrameMeta, mono_ns: int) -> int | None:
    return None if not mono_ns else meta.capture_wall_ns + (mono_ns - meta.capture_ns)


def ref_envelope(enc: EventEncoder, kind: str, seq: int, kind_seq: int, wall: int) -> dict[str, Any]:
    return {"schema": 3, "kind": kind, "seq": seq, "kind_seq": kind_seq, "publisher": enc.publisher,
            "camera": enc.camera, "publish_wall_ns": wall}


def ref_defect_fields(d: Defect, at: DefectPlacement) -> dict[str, Any]:
    x1, y1, x2, y2 = (float(v) for v in d.box)
    return {
        "class": d.cls,
        "score": _f(d.score, 4),
        "box": [_f(x1, 1), _f(y1, 1), _f(x2, 1), _f(y2, 1)],
        "box_mm": [_f(v, 1) for v in at.box_mm],
        "area_px": int(d.area_px),
        "area_mm2": _f(at.area_mm2, 2),
        "branch": d.branch,
        "rejects": bool(d.rejects),
    }


def ref_verdict(msg: dict[str, Any], v: Verdict) -> dict[str, Any]:
    meta, at = v.meta, v.placement
    msg.update({
        "frame": int(meta.index),
        "camera_frame_id": meta.camera_frame_id,
        "camera_timestamp_ns": meta.camera_timestamp_ns,
        "width": int(meta.width),
        "height": int(meta.height),
        "capture_wall_ns": int(meta.capture_wall_ns),
        "inference_start_wall_ns": _wall(meta, v.inference_start_ns),
        "inference_end_wall_ns": _wall(meta, v.inference_end_ns),
        "strip_position_m": _f(at.strip_position_m, 6),
        "frame_length_m": _f(at.frame_length_m, 6),
        "coil": at.coil.coil if at.coil else None,
        "coil_position_m": _m(at.coil_position_m),
        "gate_deadline_wall_ns": at.gate_deadline_wall_ns,
        "gate_until_wall_ns": at.gate_until_wall_ns,
        "late": msg["publish_wall_ns"] > at.gate_deadline_wall_ns,
        "status": v.status,
        "defects": [ref_defect_fields(d, da) for d, da in zip(v.defects, at.defects, strict=True)],
    })
    return msg


def ref_defect(msg: dict[str, Any], v: Verdict, index: int, verdict_seq: int,
               crop: dict[str, Any] | None) -> dict[str, Any]:
    meta, at = v.meta, v.placement
    d, da = v.defects[index], at.defects[index]
    msg.update({
        "frame": int(meta.index),
        "camera_frame_id": meta.camera_frame_id,
        "capture_wall_ns": int(meta.capture_wall_ns),
        "strip_position_m": _f(at.strip_position_m, 6),
        "coil": at.coil.coil if at.coil else None,
        "coil_position_m": _m(at.coil_position_m),
        "verdict_seq": int(verdict_seq),
        "verdict_status": v.status,
        "index": int(index),
        "count": len(v.defects),
        **ref_defect_fields(d, da),
        "gate_deadline_wall_ns": da.gate_deadline_wall_ns,
        "gate_until_wall_ns": da.gate_until_wall_ns,
        "crop": crop,
    })
    return msg


# -- generated verdicts -----------------------------------------------------------------
ODD = [0.0, -0.0, 1e-9, -1e-9, 4.9e-5, -4.9e-5, 5e-5, 1e-4, 0.05, -0.05, 0.15, 0.25, 0.35, 1.45, 2.675,
       0.00005, 0.000049999, 0.0000015, 12.25, 99.95, 1e13 + 0.05, 99999999999999.9, 1e14, 1e15, 1e16,
       1e20, -1e20, 1.7976931348623157e308, 5e-324, math.nan, math.inf, -math.inf, 123.456789,
       1 / 3, 2 / 3, -1 / 3, 1e6 + 0.0000005, 0.1 + 0.2, 7]
COILS = [None, "C-1", "coil \"7\"", "bä\\ck", "50%d%s", "tab\tnew\nline", "€"]
CLASSES = ["crazing", "rolled-in_scale", "scratches", "pitted_surface"]


def odd(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.3:
        x = rng.choice(ODD)
    elif kind < 0.5:
        x = rng.randint(-2000, 2000) / rng.choice([2, 20, 200, 2000, 20000, 2000000])   # halfway cases
    elif kind < 0.8:
        x = rng.uniform(-1, 1) * 10 ** rng.uniform(-8, 17)
    else:
        x = rng.uniform(0, 2000)
    if isinstance(x, float) and abs(x) < 1e38 and rng.random() < 0.3:
        return rng.choice([np.float32, np.float64])(x)
    return x


def make_verdict(rng: random.Random, index: int) -> Verdict:
    n = rng.choice([0, 1, 2, 3, 3, 5])
    coil_id = rng.choice(COILS)
    coil = None if coil_id is None else CoilMark(coil_id, odd(rng))
    capture_ns, wall = rng.randint(0, 10**12), rng.randint(1_600_000_000 * 10**9, 1_800_000_000 * 10**9)
    meta = FrameMeta(index=index, camera="cam0", capture_ns=capture_ns, capture_wall_ns=wall,
                     height=rng.randint(1, 5000), width=rng.randint(1, 5000),
                     camera_frame_id=rng.choice([None, 0, rng.randint(0, 2**40)]),
                     camera_timestamp_ns=rng.choice([None, rng.randint(0, 2**63)]), coil=coil)
    defects, placed = [], []
    for _ in range(n):
        defects.append(Defect(cls=rng.choice(CLASSES), score=odd(rng), box=(odd(rng), odd(rng), odd(rng), odd(rng)),
                              area_px=rng.choice([0, rng.randint(1, 10**7), np.int64(rng.randint(1, 99))]),
                              branch=rng.choice(["detection", "segmentation", "both"]), rejects=rng.random() < 0.5))
        deadline = wall + rng.randint(-10**9, 10**9)
        placed.append(DefectPlacement(box_mm=(odd(rng), odd(rng), odd(rng), odd(rng)), area_mm2=odd(rng),
                                      gate_deadline_wall_ns=deadline, gate_until_wall_ns=deadline + rng.randint(0, 10**8)))
    deadline = wall + rng.randint(-10**9, 10**9)
    at = Placement(strip_position_m=odd(rng), frame_length_m=odd(rng), coil=coil,
                   coil_position_m=None if coil is None else odd(rng), gate_deadline_wall_ns=deadline,
                   gate_until_wall_ns=deadline + rng.randint(0, 10**9), defects=tuple(placed))
    start = rng.choice([0, capture_ns + rng.randint(0, 10**8)])
    return Verdict(meta=meta, status="reject" if any(d.rejects for d in defects) else "ok", placement=at,
                   defects=defects, inference_start_ns=start, inference_end_ns=start and start + rng.randint(0, 10**8))


@pytest.mark.parametrize("publisher", ["p1", 'odd "%s" 100% ü'])
def test_verdict_and_defect_payloads_are_the_bytes_json_writes_for_the_reference_dicts(publisher):
    rng = random.Random(13)
    enc = EventEncoder("cam0", LineConfig(), publisher_id=publisher)
    for index in range(1500):
        v = make_verdict(rng, index)
        wall = v.placement.gate_deadline_wall_ns + rng.choice([-1, 0, 1])       # late or not
        as_dict = index % 2 == 1
        out, shared = enc.verdict_wire(v, publish_wall_ns=wall, as_dict=as_dict)
        assert (out.msg is not None) == as_dict
        got = out.message()
        ref = ref_verdict(ref_envelope(enc, "verdict", got["seq"], got["kind_seq"], wall), v)
        assert out.payload == encode(ref), (index, ref)
        assert (out.kind, out.seq, out.topic) == ("verdict", ref["seq"], topic_for(ref))
        # A dict built beside the text (for taps and watchers) is what subscribers decode.
        assert encode(got) == out.payload
        for i in range(len(v.defects)):
            crop = rng.choice([None, {"format": "jpeg", "box": [1, 2, 30, 40], "width": 29, "height": 38, "bytes": 999}])
            d = enc.defect_wire(v, i, shared, crop=crop, publish_wall_ns=wall + 1, as_dict=as_dict)
            assert (d.msg is not None) == as_dict
            got = d.message()
            ref_d = ref_defect(ref_envelope(enc, "defect", got["seq"], got["kind_seq"], wall + 1), v, i, out.seq, crop)
            assert d.payload == encode(ref_d), (index, i, ref_d)
            assert (d.kind, d.seq, d.topic) == ("defect", ref_d["seq"], topic_for(ref_d))
            assert encode(got) == d.payload


def test_the_dict_methods_build_the_reference_dicts_and_number_like_the_wire():
    rng = random.Random(7)
    enc = EventEncoder("cam0", LineConfig(), publisher_id="p1")
    v = make_verdict(rng, 3)
    while not v.defects:
        v = make_verdict(rng, 3)
    msg = enc.verdict(v, publish_wall_ns=5)
    assert msg == ref_verdict(ref_envelope(enc, "verdict", 0, 0, 5), v)
    assert enc.defect(v, 0, msg["seq"], publish_wall_ns=6) == ref_defect(ref_envelope(enc, "defect", 1, 0, 6), v, 0, 0, None)
    out, _ = enc.verdict_wire(v, publish_wall_ns=7)
    assert (out.seq, out.message()["kind_seq"]) == (2, 1)


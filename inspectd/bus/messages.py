"""The event messages: topics, the JSON payloads, and their per-publisher sequence numbers.

Every message is a ZeroMQ multipart message ``[topic, payload]`` (a ``defect`` message may
carry a third part, a JPEG crop). The payload is UTF-8 JSON, one object, described by
``inspectd/schemas/events.schema.json`` and ``docs/events.md``; it changes only together with
``SCHEMA_VERSION``.

Topics are ``KIND/CAMERA/DETAIL`` (``/`` cannot occur in a camera id or a class name):

=================================  ===========================================
``verdict/<camera>/<ok|reject>``   one per inspected frame
``defect/<camera>/<class>``        one per defect of a verdict
``uninspected/<camera>/<reason>``  a stretch of frames that was not inspected
``heartbeat/<camera>/``            at a fixed interval, always
``status/<camera>/``               counters, rates, latencies
``coil_start/<camera>/``           a coil (product unit) started
``coil_end/<camera>/``             a coil ended
``alarm/<camera>/<type>``          e.g. ``alarm/cam0/periodic``: a repeating defect
=================================  ===========================================

ZeroMQ filters on topic prefixes, so a subscriber filters by kind with ``verdict/``, by kind
and camera with ``verdict/cam0/`` (the trailing ``/`` keeps ``cam0`` from matching ``cam01``),
by camera alone with the five ``KIND/cam0/`` prefixes (``camera_prefixes``), and finer with
the detail (``verdict/cam0/reject``, ``defect/cam0/scratches``).

Sequence numbers: ``seq`` counts every message of a publisher (all kinds, from 0);
``kind_seq`` counts the messages of one kind. A subscriber that takes everything a publisher
sends checks ``seq``; one that filters by kind (or kind and camera) checks ``kind_seq`` per
kind, and each heartbeat's ``next_kind_seq`` (so that the loss of a kind's last message shows
within a heartbeat interval). Either way a jump is a loss. ``publisher`` is a random id per process, so a restarted
publisher (counting from 0 again) is told apart from a loss.
"""
from __future__ import annotations

import json
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from inspectd.domain.frames import CoilMark, FrameMeta
from inspectd.domain.placement import DefectPlacement
from inspectd.domain.verdicts import Defect, Uninspected, Verdict
from inspectd.errors import InspectdError
from inspectd.line import LineConfig

# 2: coil_start, coil_end and alarm messages; coil fields on verdict, defect, uninspected.
# 3: open_coil on heartbeats (a subscriber that joins mid-coil learns the coil's start).
SCHEMA_VERSION = 3
KINDS: tuple[str, ...] = ("verdict", "defect", "uninspected", "heartbeat", "status",
                          "coil_start", "coil_end", "alarm")
SEP = "/"

# Why frames went uninspected: the ``reason`` of an ``uninspected`` message (also its topic's
# third field), with what each means for the strip. docs/events.md lists them from here
# (pipelines/gen_events_docs.py; tests/test_events_docs.py checks it). A new reason is added
# here first, then docs regenerated; subscribers must treat a reason they do not know like
# any other uninspected strip.
UNINSPECTED_REASONS: dict[str, str] = {
    "overflow": "the ring buffer was full: inference fell behind the source and the overflow "
                "policy (`ring.policy`) gave these frames up",
    "camera_lost": "the camera skipped them (a gap in its frame ids): they never reached the host",
    "camera_silent": "the camera delivered nothing while the line moved: frame-lengths of strip "
                     "that passed unseen, from the line speed",
    "corrupt": "the source could not deliver them whole: a truncated or damaged frame (a JPEG that "
               "fails the structural check, a frame that does not decode to the stream's size), "
               "a camera buffer its GenTL producer marked incomplete (missing packets), or "
               "frames a recording that breaks off never delivered; never inspected as if whole",
    "deadline": "their verdicts could not have been published before their strip reached the reject "
                "gate (the recent time per frame said so; `inference.skip_late`): published at once "
                "instead, so that the gate rejects them in time",
    "shutdown": "the daemon stopped (SIGTERM, the end of a recording) before they were inspected",
    "error": "inspection failed (a model or runtime error) while they waited or were being inspected",
}

_TOKEN = re.compile(r"^[A-Za-z0-9_.\-]+$")
_NOT_TOKEN = re.compile(r"[^a-z0-9_\-]+")


def check_token(value: str, what: str) -> str:
    """A camera id or class name must not contain the topic separator (or spaces)."""
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise InspectdError(
            f"{what} {value!r}: must be letters, digits, '_', '-' or '.' (it is a field of the event topics)"
        )
    return value


def reason_token(reason: str) -> str:
    """``reason`` of an uninspected stretch as a short lowercase token (``UNINSPECTED_REASONS``)."""
    token = _NOT_TOKEN.sub("_", str(reason).strip().lower()).strip("_")[:40]
    return token or "unknown"


def topic(kind: str, camera: str, detail: str = "") -> bytes:
    return f"{kind}{SEP}{camera}{SEP}{detail}".encode()


def verdict_topic(camera: str, status: str) -> bytes:
    return topic("verdict", camera, status)


def defect_topic(camera: str, cls: str) -> bytes:
    return topic("defect", camera, cls)


def uninspected_topic(camera: str, reason: str) -> bytes:
    return topic("uninspected", camera, reason_token(reason))


def heartbeat_topic(camera: str) -> bytes:
    return topic("heartbeat", camera)


def status_topic(camera: str) -> bytes:
    return topic("status", camera)


def kind_prefix(kind: str) -> bytes:
    """Subscription prefix for one kind from every camera."""
    return f"{kind}{SEP}".encode()


def camera_prefixes(camera: str, kinds: tuple[str, ...] | list[str] = KINDS) -> list[bytes]:
    """Subscription prefixes for every message (or the given kinds) of one camera."""
    return [topic(k, camera) for k in kinds]


def topic_for(msg: dict[str, Any]) -> bytes:
    """The topic a payload is published under."""
    kind, camera = msg["kind"], msg["camera"]
    if kind == "verdict":
        return verdict_topic(camera, msg["status"])
    if kind == "defect":
        return defect_topic(camera, msg["class"])
    if kind == "uninspected":
        return uninspected_topic(camera, msg["reason"])
    if kind in ("heartbeat", "status", "coil_start", "coil_end"):
        return topic(kind, camera)
    if kind == "alarm":
        return topic(kind, camera, msg["alarm"])
    raise ValueError(f"unknown message kind {kind!r}")


# One encoder for every message (json.dumps with these options builds a new one per call).
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode(msg: dict[str, Any]) -> bytes:
    """Payload bytes: compact UTF-8 JSON (the exact bytes every subscriber decodes)."""
    return _JSON.encode(msg).encode("utf-8")


def decode(payload: bytes) -> dict[str, Any]:
    """Parse a payload; ValueError if it is not one JSON object with a known kind."""
    msg = json.loads(payload.decode("utf-8"))
    if not isinstance(msg, dict) or msg.get("kind") not in KINDS:
        raise ValueError("not an inspectd event")
    return msg


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of every payload."""
    text = resources.files("inspectd").joinpath("schemas/events.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _jsonable(value: Any) -> Any:
    """Counters from the pipeline as plain JSON: numpy scalars unwrapped, NaN/inf as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "item"):  # numpy scalar
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _f(x: Any, digits: int) -> float:
    x = float(x)
    return round(x, digits) if math.isfinite(x) else 0.0


@dataclass(slots=True)
class Wire:
    """One message as it goes out: its topic and payload bytes, and the payload as a dict
    (for taps and watchers), decoded from the bytes on first use where it was not built as one."""

    kind: str
    seq: int
    topic: bytes
    payload: bytes
    msg: dict[str, Any] | None = None

    def message(self) -> dict[str, Any]:
        if self.msg is None:
            self.msg = json.loads(self.payload)
        return self.msg


def wire(msg: dict[str, Any]) -> Wire:
    """A message built as a dict, ready to send."""
    return Wire(msg["kind"], msg["seq"], topic_for(msg), encode(msg), msg)


# -- verdict and defect payloads as text -------------------------------------------------
# These go out for every frame (a verdict, and a message per defect), so they are written as
# text by f-strings instead of built as dicts and run through json: the keys are constants,
# each defect's fields are written once for both of its messages, and each value is rounded
# by "%.Nf" (cheap) instead of round() and repr (each several times dearer). The bytes are
# exactly encode() of the dicts the plain path builds (the same rounding, key order and float
# text); tests/test_bus_wire.py compares the two on many verdicts, odd values included. Where
# a tap or watcher needs the message as a dict, it is built from the same texts (float() of a
# value's text is the rounded float), cheaper than decoding the payload.

_quote = json.encoder.encode_basestring       # a str as JSON (ensure_ascii=False, as _JSON)

# "%.Nf" rounds the exact binary value to N decimals as round(x, N) does. With at most 15
# significant digits, that decimal with its trailing zeros dropped is the shortest text of the
# rounded float, i.e. its repr, which json writes; repr has no exponent from 1e-4 up to 1e16.
_FIXED = {n: f"%.{n}f" for n in range(1, 7)}
_FIXED_BELOW = {n: 10.0 ** (15 - n) for n in _FIXED}


def _num(x: Any, digits: int) -> str:
    """``_f(x, digits)`` (1 to 6 digits) as JSON text."""
    if 1e-4 <= abs(x) < _FIXED_BELOW[digits]:        # False for NaN and inf too
        text = (_FIXED[digits] % x).rstrip("0")
        return text + "0" if text[-1] == "." else text
    return repr(_f(x, digits))


def _num_or_null(x: Any, digits: int) -> str:
    return "null" if x is None else _num(x, digits)


def _float_or_none(text: str) -> float | None:
    return None if text == "null" else float(text)


def _four_tenths(a: Any, b: Any, c: Any, d: Any) -> str:
    """Four values rounded to one decimal, as the items of a JSON array (no zeros to drop)."""
    top = _FIXED_BELOW[1]
    if -top < a < top and -top < b < top and -top < c < top and -top < d < top:   # False for NaN too
        return "%.1f,%.1f,%.1f,%.1f" % (a, b, c, d)    # noqa: UP031 - one call formats all four
    return ",".join([repr(_f(v, 1)) for v in (a, b, c, d)])


def defect_parts(d: Defect, at: DefectPlacement, as_dict: bool) -> tuple[str, dict[str, Any] | None]:
    """A defect's fields as JSON object members (no braces: an item of the verdict's
    ``defects`` and the middle of the defect's own message), and as a dict if ``as_dict``."""
    score, box, box_mm, area_mm2 = _num(d.score, 4), _four_tenths(*d.box), _four_tenths(*at.box_mm), _num(at.area_mm2, 2)
    area_px, rejects = int(d.area_px), bool(d.rejects)
    text = (f'"class":{_quote(d.cls)},"score":{score},"box":[{box}],"box_mm":[{box_mm}],"area_px":{area_px},'
            f'"area_mm2":{area_mm2},"branch":{_quote(d.branch)},"rejects":{"true" if rejects else "false"}')
    if not as_dict:
        return text, None
    return text, {"class": d.cls, "score": float(score), "box": list(map(float, box.split(","))),
                  "box_mm": list(map(float, box_mm.split(","))), "area_px": area_px,
                  "area_mm2": float(area_mm2), "branch": d.branch, "rejects": rejects}


def _frame_fields(frame: int, frame_id: int | str, capture: int, strip: str, coil: str, coil_position: str,
                  verdict_seq: int, status: str) -> str:
    """A defect message's fields from "frame" to "verdict_status" (values as JSON text or ints)."""
    return (f'"frame":{frame},"camera_frame_id":{frame_id},"capture_wall_ns":{capture},"strip_position_m":{strip},'
            f'"coil":{coil},"coil_position_m":{coil_position},"verdict_seq":{verdict_seq},"verdict_status":{status},')


@dataclass(slots=True)
class VerdictParts:
    """What the defect messages of a verdict share with it, written once."""

    frame_fields: str                          # "frame" .. "verdict_status" of a defect message
    defects: list[str]                         # each defect's fields (defect_parts)
    frame_dict: dict[str, Any] | None = None   # the same as dicts, where dicts were asked for
    defect_dicts: list[dict[str, Any]] | None = None


class EventEncoder:
    """Builds the payloads of one publisher and numbers them.

    The numbering is thread-safe, but numbers are handed out in the order the messages are
    built, so build them in the order they are sent (the publisher does, on its thread).
    Verdicts and defects, one per frame and per defect, are written as text (``verdict_wire``,
    ``defect_wire``); the other kinds are built as dicts and encoded by ``encode``.
    """

    def __init__(self, camera: str, line: LineConfig, publisher_id: str | None = None,
                 capacity: dict[str, Any] | None = None):
        self.camera = check_token(camera, "camera id")
        self.line = line
        self.capacity = capacity      # runtime.capacity's result at start, sent in every status
        self.publisher = publisher_id or secrets.token_hex(8)
        self._lock = threading.Lock()
        self._seq = 0
        self._kind_seq = dict.fromkeys(KINDS, 0)
        self._last_frame: int | None = None
        self._started_ns = time.monotonic_ns()
        # The coil between the coil_start and the coil_end messages built so far (so a
        # heartbeat never names a coil before its start or after its end was sent).
        self._open_coil: dict[str, Any] | None = None
        # The envelope's constant text: up to seq, and from kind_seq's value up to publish_wall_ns's.
        self._heads = {k: f'{{"schema":{SCHEMA_VERSION},"kind":{_quote(k)},"seq":' for k in ("verdict", "defect")}
        self._ids = f',"publisher":{_quote(self.publisher)},"camera":{_quote(self.camera)},"publish_wall_ns":'
        self._topics: dict[tuple[str, str], bytes] = {}   # (kind, detail): verdict and defect topics

    # -- numbering ---------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        with self._lock:
            return self._seq

    @property
    def last_frame(self) -> int | None:
        """Highest frame index covered by a verdict or an uninspected stretch so far."""
        return self._last_frame

    def skip(self, counts: dict[str, int]) -> None:
        """Consume the numbers of messages that were lost before they were built.

        The publisher calls this for what it could not queue, so that every lost message
        shows as a gap in ``seq`` and ``kind_seq``.
        """
        with self._lock:
            for kind, n in counts.items():
                self._seq += n
                self._kind_seq[kind] += n

    def _number(self, kind: str) -> tuple[int, int]:
        """The next ``seq`` and ``kind_seq`` of a ``kind`` message."""
        with self._lock:
            seq = self._seq
            kind_seq = self._kind_seq[kind]
            self._seq = seq + 1
            self._kind_seq[kind] = kind_seq + 1
        return seq, kind_seq

    def _topic(self, kind: str, detail: str) -> bytes:
        key = (kind, detail)
        t = self._topics.get(key)
        if t is None:
            t = self._topics[key] = topic(kind, self.camera, detail)
        return t

    def _envelope(self, kind: str, publish_wall_ns: int | None) -> dict[str, Any]:
        seq, kind_seq = self._number(kind)
        return {
            "schema": SCHEMA_VERSION,
            "kind": kind,
            "seq": seq,
            "kind_seq": kind_seq,
            "publisher": self.publisher,
            "camera": self.camera,
            "publish_wall_ns": time.time_ns() if publish_wall_ns is None else int(publish_wall_ns),
        }

    def _note_frame(self, index: int, coil: CoilMark | None = None) -> None:
        if self._last_frame is None or index > self._last_frame:
            self._last_frame = index
        with self._lock:
            o = self._open_coil
            if coil is not None and o is not None and o["coil"] == coil.coil and o["head_strip_position_m"] is None:
                o["head_strip_position_m"] = _f(coil.head_m, 6)

    # -- times -------------------------------------------------------------------
    @staticmethod
    def _wall(meta: FrameMeta, mono_ns: int) -> int | None:
        """A monotonic time of this frame's life as wall time (via the capture instant)."""
        if not mono_ns:
            return None
        return meta.capture_wall_ns + (mono_ns - meta.capture_ns)

    @staticmethod
    def _m(value: float | None) -> float | None:
        return None if value is None else _f(value, 6)

    # -- messages ----------------------------------------------------------------
    # Positions and gate times come placed with the verdict or report (runtime.placement);
    # here they are only copied and rounded for the wire.
    def verdict_wire(self, v: Verdict, publish_wall_ns: int | None = None,
                     as_dict: bool = False) -> tuple[Wire, VerdictParts]:
        """The verdict message, and what its defect messages (``defect_wire``) reuse of it.
        ``as_dict``: build the dicts too (for a tap or watcher), else only the payload."""
        meta, at = v.meta, v.placement
        seq, kind_seq = self._number("verdict")
        wall = time.time_ns() if publish_wall_ns is None else int(publish_wall_ns)
        parts = [defect_parts(d, da, as_dict) for d, da in zip(v.defects, at.defects, strict=True)]
        defects = [text for text, _ in parts]
        frame, capture = int(meta.index), int(meta.capture_wall_ns)
        frame_id, stamp = meta.camera_frame_id, meta.camera_timestamp_ns
        start, end = self._wall(meta, v.inference_start_ns), self._wall(meta, v.inference_end_ns)
        coil = at.coil.coil if at.coil else None
        # Texts of the values: ints and "null" go into the f-strings as they are.
        frame_id_t = "null" if frame_id is None else frame_id
        coil_t = "null" if coil is None else _quote(coil)
        strip, length = _num(at.strip_position_m, 6), _num(at.frame_length_m, 6)
        coil_position = _num_or_null(at.coil_position_m, 6)
        status = _quote(v.status)
        late = wall > at.gate_deadline_wall_ns
        text = (
            f'{self._heads["verdict"]}{seq},"kind_seq":{kind_seq}{self._ids}{wall},'
            f'"frame":{frame},"camera_frame_id":{frame_id_t},"camera_timestamp_ns":{"null" if stamp is None else stamp},'
            f'"width":{int(meta.width)},"height":{int(meta.height)},"capture_wall_ns":{capture},'
            f'"inference_start_wall_ns":{"null" if start is None else start},'
            f'"inference_end_wall_ns":{"null" if end is None else end},'
            f'"strip_position_m":{strip},"frame_length_m":{length},"coil":{coil_t},"coil_position_m":{coil_position},'
            f'"gate_deadline_wall_ns":{at.gate_deadline_wall_ns},"gate_until_wall_ns":{at.gate_until_wall_ns},'
            f'"late":{"true" if late else "false"},"status":{status},'
            f'"defects":[{"{" + "},{".join(defects) + "}" if defects else ""}]}}')
        shared = VerdictParts(_frame_fields(frame, frame_id_t, capture, strip, coil_t, coil_position, seq, status),
                              defects)
        msg = None
        if as_dict:
            shared.frame_dict = {
                "frame": frame, "camera_frame_id": frame_id, "capture_wall_ns": capture,
                "strip_position_m": float(strip), "coil": coil, "coil_position_m": _float_or_none(coil_position),
                "verdict_seq": seq, "verdict_status": v.status}
            shared.defect_dicts = [fields for _, fields in parts if fields is not None]
            msg = {
                "schema": SCHEMA_VERSION, "kind": "verdict", "seq": seq, "kind_seq": kind_seq,
                "publisher": self.publisher, "camera": self.camera, "publish_wall_ns": wall,
                "frame": frame, "camera_frame_id": frame_id, "camera_timestamp_ns": stamp,
                "width": int(meta.width), "height": int(meta.height), "capture_wall_ns": capture,
                "inference_start_wall_ns": start, "inference_end_wall_ns": end,
                "strip_position_m": shared.frame_dict["strip_position_m"], "frame_length_m": float(length),
                "coil": coil, "coil_position_m": shared.frame_dict["coil_position_m"],
                "gate_deadline_wall_ns": at.gate_deadline_wall_ns, "gate_until_wall_ns": at.gate_until_wall_ns,
                "late": late, "status": v.status, "defects": shared.defect_dicts}
        self._note_frame(frame, meta.coil)
        return Wire("verdict", seq, self._topic("verdict", v.status), text.encode("utf-8"), msg), shared

    def defect_wire(self, v: Verdict, index: int, shared: VerdictParts, crop: dict[str, Any] | None = None,
                    publish_wall_ns: int | None = None, as_dict: bool = False) -> Wire:
        """Defect ``index`` of verdict ``v`` on its own (``shared``: from ``verdict_wire``).
        ``as_dict``: build the dict too (``shared`` must have its dicts, else it is decoded when asked for)."""
        seq, kind_seq = self._number("defect")
        wall = time.time_ns() if publish_wall_ns is None else int(publish_wall_ns)
        # The defect's own rows: a gate that can act on part of a frame needs only these.
        da = v.placement.defects[index]
        text = (f'{self._heads["defect"]}{seq},"kind_seq":{kind_seq}{self._ids}{wall},{shared.frame_fields}'
                f'"index":{int(index)},"count":{len(v.defects)},{shared.defects[index]},'
                f'"gate_deadline_wall_ns":{da.gate_deadline_wall_ns},"gate_until_wall_ns":{da.gate_until_wall_ns},'
                f'"crop":{"null" if crop is None else _JSON.encode(crop)}}}')
        msg = None
        if as_dict and shared.frame_dict is not None and shared.defect_dicts is not None:
            msg = {"schema": SCHEMA_VERSION, "kind": "defect", "seq": seq, "kind_seq": kind_seq,
                   "publisher": self.publisher, "camera": self.camera, "publish_wall_ns": wall,
                   **shared.frame_dict, "index": int(index), "count": len(v.defects), **shared.defect_dicts[index],
                   "gate_deadline_wall_ns": da.gate_deadline_wall_ns, "gate_until_wall_ns": da.gate_until_wall_ns,
                   "crop": crop}
        return Wire("defect", seq, self._topic("defect", v.defects[index].cls), text.encode("utf-8"), msg)

    def verdict(self, v: Verdict, publish_wall_ns: int | None = None) -> dict[str, Any]:
        """The verdict message as a dict."""
        return self.verdict_wire(v, publish_wall_ns, as_dict=True)[0].message()

    def defect(self, v: Verdict, index: int, verdict_seq: int, publish_wall_ns: int | None = None,
               crop: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defect ``index`` of verdict ``v`` (sent as message ``verdict_seq``) on its own, as a dict."""
        meta, at = v.meta, v.placement
        coil = at.coil.coil if at.coil else None
        shared = VerdictParts(
            _frame_fields(int(meta.index), "null" if meta.camera_frame_id is None else meta.camera_frame_id,
                          int(meta.capture_wall_ns), _num(at.strip_position_m, 6),
                          "null" if coil is None else _quote(coil), _num_or_null(at.coil_position_m, 6),
                          int(verdict_seq), _quote(v.status)),
            [defect_parts(d, da, False)[0] for d, da in zip(v.defects, at.defects, strict=True)])
        return self.defect_wire(v, index, shared, crop, publish_wall_ns).message()

    def uninspected(self, u: Uninspected, publish_wall_ns: int | None = None) -> dict[str, Any]:
        """Frames ``u.first.index .. u.last.index`` (``u.count`` of them) were not inspected."""
        first, last, at = u.first, u.last, u.placement
        msg = self._envelope("uninspected", publish_wall_ns)
        msg.update({
            "reason": reason_token(u.reason),
            "first_frame": int(first.index),
            "last_frame": int(last.index),
            "count": int(u.count),
            "first_camera_frame_id": first.camera_frame_id,
            "last_camera_frame_id": last.camera_frame_id,
            "first_capture_wall_ns": int(first.capture_wall_ns),
            "last_capture_wall_ns": int(last.capture_wall_ns),
            "strip_start_m": _f(at.strip_start_m, 6),
            "strip_end_m": _f(at.strip_end_m, 6),
            "coil": at.coil,
            "coil_start_m": self._m(at.coil_start_m),
            "coil_end_m": self._m(at.coil_end_m),
            "gate_deadline_wall_ns": at.gate_deadline_wall_ns,
            "gate_until_wall_ns": at.gate_until_wall_ns,
        })
        self._note_frame(last.index, first.coil)
        return msg

    def event(self, kind: str, body: dict[str, Any], publish_wall_ns: int | None = None) -> dict[str, Any]:
        """A ``coil_start``, ``coil_end`` or ``alarm`` message: the envelope plus ``body``
        (built by ``runtime.coils`` and ``runtime.periodic``)."""
        if kind not in ("coil_start", "coil_end", "alarm"):
            raise ValueError(f"not an event kind: {kind!r}")
        msg = self._envelope(kind, publish_wall_ns)
        msg.update(body)
        with self._lock:
            if kind == "coil_start":
                self._open_coil = {"coil": body["coil"], "width_mm": body.get("width_mm"),
                                   "meta": dict(body.get("meta") or {}), "start_wall_ns": body.get("start_wall_ns"),
                                   "start_seq": msg["seq"], "head_strip_position_m": None}
            elif kind == "coil_end" and self._open_coil is not None and self._open_coil["coil"] == body.get("coil"):
                self._open_coil = None
        return msg

    def heartbeat(self, interval_s: float = 1.0, publish_wall_ns: int | None = None) -> dict[str, Any]:
        msg = self._envelope("heartbeat", publish_wall_ns)
        with self._lock:
            # What each kind's next message will carry: a subscriber that follows kind_seq learns
            # here, at the latest, that the last messages of a kind were lost.
            next_kind_seq = dict(self._kind_seq)
            open_coil = None if self._open_coil is None else {**self._open_coil, "meta": dict(self._open_coil["meta"])}
        msg.update({
            "interval_s": float(interval_s),
            "next_kind_seq": next_kind_seq,
            "last_frame": self._last_frame,
            "uptime_s": _f((time.monotonic_ns() - self._started_ns) / 1e9, 3),
            "open_coil": open_coil,
        })
        return msg

    def status(self, counters: dict[str, Any], bus: dict[str, int] | None = None,
               interval_s: float | None = None, publish_wall_ns: int | None = None) -> dict[str, Any]:
        msg = self._envelope("status", publish_wall_ns)
        msg.update({
            "interval_s": None if interval_s is None else float(interval_s),
            "uptime_s": _f((time.monotonic_ns() - self._started_ns) / 1e9, 3),
            "last_frame": self._last_frame,
            "line": {
                "speed_m_per_s": self.line.speed_m_per_s,
                "mm_per_px": self.line.mm_per_px,
                "gate_distance_m": self.line.gate_distance_m,
                "frame_length_m": self.line.frame_length_m,
            },
            "capacity": None if self.capacity is None else dict(self.capacity),
            "bus": {k: int(v) for k, v in (bus or {}).items()},
            "counters": _jsonable(dict(counters)),
        })
        return msg

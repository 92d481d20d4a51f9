"""``inspectd subscribe ADDRESS``: print a publisher's events live and report what was missed."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

NAME = "subscribe"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="print the events of a publisher live",
        description=(
            "Connect to one or more inspectd publishers (or a proxy), print every event as it "
            "arrives and report gaps in the sequence numbers (missed messages), publisher restarts "
            "and publishers that fall silent, on stderr. Topics are KIND/CAMERA/DETAIL prefixes, "
            "e.g. verdict/, verdict/cam0/, verdict/cam0/reject, defect/cam0/scratches."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("address", nargs="+", metavar="ADDRESS",
                   help="publisher or proxy address, e.g. tcp://inspect-pc:5556 (prefix @ to bind)")
    p.add_argument("--topic", "-t", action="append", default=None, metavar="T",
                   help="topic prefix to receive (repeatable); default: everything")
    p.add_argument("--camera", action="append", default=None, metavar="ID",
                   help="only this camera's events, all kinds (repeatable; combines with --kind)")
    p.add_argument("--kind", action="append", default=None,
                   choices=["verdict", "defect", "uninspected", "heartbeat", "status", "coil_start", "coil_end", "alarm"],
                   help="only these kinds (repeatable)")
    p.add_argument("--json", action="store_true",
                   help="print each payload as one JSON line (exactly as received) instead of a summary")
    p.add_argument("--count", type=int, default=None, metavar="N", help="exit after N events")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="exit with status 1 if no event arrives for S seconds")
    p.add_argument("--silence-factor", type=float, default=3.0, metavar="F",
                   help="report a publisher as silent after F heartbeat intervals without a message")
    p.add_argument("--curve-server-key", default=None, metavar="FILE",
                   help="the publisher's public key file (NAME.key) for CurveZMQ")
    p.add_argument("--curve-client-key", default=None, metavar="FILE",
                   help="this subscriber's secret key file (NAME.key_secret) for CurveZMQ")
    p.set_defaults(func=run)


def topics_from(args: argparse.Namespace) -> list[bytes]:
    from inspectd.bus.messages import KINDS, check_token, kind_prefix, topic

    topics = [t.encode("utf-8") for t in (args.topic or [])]
    kinds = args.kind or []
    if args.camera:
        for cam in args.camera:
            check_token(cam, "--camera")
            topics += [topic(k, cam) for k in (kinds or KINDS)]
    elif kinds:
        topics += [kind_prefix(k) for k in kinds]
    return topics or [b""]


def summary(msg: dict[str, Any], extra_parts: int) -> str:
    kind = msg.get("kind")
    head = f"{msg.get('seq'):>7} {kind:<11} {msg.get('camera')}"
    if kind == "verdict":
        margin_ms = (msg["gate_deadline_wall_ns"] - msg["publish_wall_ns"]) / 1e6
        defects = ", ".join(f"{d['class']} {d['score']:.2f}" for d in msg.get("defects", []))
        return (f"{head} frame {msg['frame']} {msg['status'].upper()} at {msg['strip_position_m']:.3f} m, "
                f"{margin_ms:.0f} ms before the gate{' (LATE)' if msg.get('late') else ''}"
                f"{': ' + defects if defects else ''}")
    if kind == "defect":
        b = msg["box"]
        crop = f", crop {msg['crop']['bytes']} B" if msg.get("crop") and extra_parts else ""
        return (f"{head} frame {msg['frame']} {msg['class']} {msg['score']:.2f} box "
                f"[{b[0]:.0f} {b[1]:.0f} {b[2]:.0f} {b[3]:.0f}] {msg['area_mm2']:.1f} mm2 ({msg['branch']}){crop}")
    if kind == "uninspected":
        return (f"{head} frames {msg['first_frame']}..{msg['last_frame']} ({msg['count']}) NOT INSPECTED: "
                f"{msg['reason']}, strip {msg['strip_start_m']:.3f}..{msg['strip_end_m']:.3f} m")
    if kind == "heartbeat":
        return f"{head} alive, last frame {msg.get('last_frame')}, up {msg.get('uptime_s', 0):.0f} s"
    if kind == "status":
        compact = (",", ":")
        return (f"{head} {json.dumps(msg.get('counters', {}), separators=compact)} "
                f"bus {json.dumps(msg.get('bus', {}), separators=compact)}")
    if kind == "coil_start":
        return f"{head} coil {msg['coil']} STARTED" + (f", width {msg['width_mm']:g} mm" if msg.get("width_mm") else "")
    if kind == "coil_end":
        length = f", {msg['length_m']:.2f} m" if msg.get("length_m") is not None else ""
        return f"{head} coil {msg['coil']} ENDED ({msg['closed_by']}{length}, {msg['frames']} frames)"
    if kind == "alarm":
        return (f"{head} ALARM {msg['alarm']} {msg['state']}: {msg['class']} every {msg['pitch_m']:.3f} m at "
                f"{msg['cross_mm']:.0f} mm across, {msg['repeats']} marks, coil {msg.get('coil')}")
    return f"{head} {json.dumps(msg)}"


def run(args: argparse.Namespace) -> int:
    from inspectd.bus.curve import CurveClient
    from inspectd.bus.subscriber import EventSubscriber
    from inspectd.errors import InspectdError

    if (args.curve_server_key is None) != (args.curve_client_key is None):
        raise InspectdError("CurveZMQ needs both --curve-server-key and --curve-client-key")
    if args.count is not None and args.count < 1:
        raise InspectdError(f"--count {args.count}: must be at least 1")
    curve = CurveClient.load(args.curve_server_key, args.curve_client_key) if args.curve_server_key else None
    topics = topics_from(args)
    sub = EventSubscriber(args.address, topics, curve=curve)
    out, err = sys.stdout, sys.stderr
    n = 0
    last_event = time.monotonic()
    silent_reported: set[str] = set()
    try:
        while args.count is None or n < args.count:
            ev = sub.recv(0.25)
            now = time.monotonic()
            for pub, camera, quiet in sub.silent(args.silence_factor):
                if pub not in silent_reported:
                    silent_reported.add(pub)
                    print(f"inspectd subscribe: camera {camera} (publisher {pub}) silent for {quiet:.1f} s",
                          file=err, flush=True)
            if ev is None:
                if args.timeout is not None and now - last_event > args.timeout:
                    print(f"inspectd subscribe: no event for {args.timeout:g} s", file=err)
                    return 1
                continue
            last_event = now
            if ev.msg is None:
                print(f"inspectd subscribe: {ev.error}", file=err, flush=True)
                continue
            pub = str(ev.msg.get("publisher"))
            if pub in silent_reported:
                silent_reported.discard(pub)
                print(f"inspectd subscribe: camera {ev.msg.get('camera')} (publisher {pub}) is back",
                      file=err, flush=True)
            if ev.restarted:
                print(f"inspectd subscribe: camera {ev.msg.get('camera')} restarted (new publisher {pub})",
                      file=err, flush=True)
            for gap in ev.gaps:
                print(f"inspectd subscribe: {gap.describe()}", file=err, flush=True)
            line = ev.payload.decode("utf-8") if args.json else summary(ev.msg, len(ev.parts))
            print(line, file=out, flush=True)
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        t = sub.tracker
        if t.gaps or t.restarts or sub.undecodable:
            print(f"inspectd subscribe: {sub.received} events, {t.gaps} gaps ({t.missing} messages missed), "
                  f"{t.restarts} restarts, {sub.undecodable} undecodable", file=err)
        sub.close()
    return 0

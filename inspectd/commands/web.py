"""``inspectd web --db PATH_OR_URL``: the plant's pages over the store's database (read-only)."""
from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

NAME = "web"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="serve the plant's pages (line, coils, gallery) from the store's database",
        description=(
            "Serve read-only web pages over the database that inspectd store writes: Line now (each "
            "camera's latest verdicts, rates, latency, uninspected stretches, heartbeat age; live), Coils "
            "(counts per class, grade, a printable report and CSV per coil), the Coil map (every defect "
            "where it lies on the coil; click one for its crop) and a Gallery of crops. Bound to "
            "localhost by default; another --host needs a --token, which every request must then carry "
            "(Authorization: Bearer TOKEN, or ?token=TOKEN once: the page then keeps it in a cookie). "
            "See docs/web.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--db", required=True, metavar="PATH_OR_URL",
                   help="the store's SQLite file, or postgresql://USER:PASSWORD@HOST:PORT/NAME")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free port)")
    p.add_argument("--token", default=None, metavar="T", help="require this token on every request")
    p.add_argument("--token-file", default=None, metavar="FILE",
                   help="read the token from FILE (keeps it out of the process list)")
    p.add_argument("--grades", default=None, metavar="FILE",
                   help="coil grade rules (YAML, see docs/web.md); default: A/B/C/D by defects per 100 m")
    p.add_argument("--poll", type=float, default=1.0, metavar="S",
                   help="seconds between the live line view's database polls")
    p.set_defaults(func=run)


def is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from inspectd.errors import InspectdError

    token = args.token
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InspectdError(f"--token-file {args.token_file}: cannot read: {exc.strerror}") from None
        if not token:
            raise InspectdError(f"--token-file {args.token_file}: empty")
    if token is not None and len(token) < 8:
        raise InspectdError("--token: at least 8 characters")
    if not is_local(args.host) and not token:
        raise InspectdError(f"--host {args.host}: serving beyond this machine needs --token or --token-file")
    if not 0 <= args.port <= 65535:
        raise InspectdError(f"--port {args.port}: out of range")
    if not args.poll > 0:
        raise InspectdError(f"--poll {args.poll:g}: must be more than 0")

    import uvicorn

    from inspectd.store.database import describe
    from inspectd.web.app import build_app
    from inspectd.web.grades import DEFAULT_GRADES, load_grades

    grades = load_grades(args.grades) if args.grades else DEFAULT_GRADES
    app = build_app(args.db, token=token, grades=grades, poll_s=args.poll)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        raise InspectdError(f"--host {args.host} --port {args.port}: cannot listen: {exc.strerror}",
                            exit_code=1) from None
    sock.listen(128)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"inspectd web: http://{shown}:{port}/ ({describe(args.db)}{', token required' if token else ''})",
          file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on")
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0

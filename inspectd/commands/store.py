"""``inspectd store ADDRESS --db PATH_OR_URL``: keep every event of the bus in a database."""
from __future__ import annotations

import argparse
import re
import sys

NAME = "store"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="keep every event of the bus in SQLite or PostgreSQL",
        description=(
            "Subscribe to one or more inspectd publishers (or a proxy) and write every message into a "
            "database: verdicts, defects (with their JPEG crops when the bus sends them), uninspected "
            "stretches, coil start/end, status, heartbeats and any other kind, and a row for every gap in "
            "the sequence numbers (messages lost, sent while the store was down, before a daemon restart). "
            "--db is a SQLite file (created, write-ahead logging) or postgresql://USER:PASSWORD@HOST/NAME. "
            "The schema is created and migrated at start. Writes are batched: one transaction per "
            "--batch-max messages or --batch-ms. Runs until SIGINT or SIGTERM, committing what it holds. "
            "Retention (off by default): --retain-days, --retain-crops-days, --max-size; see docs/store.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("address", nargs="+", metavar="ADDRESS",
                   help="publisher or proxy address, e.g. tcp://inspect-pc:5556 (prefix @ to bind)")
    p.add_argument("--db", required=True, metavar="PATH_OR_URL",
                   help="SQLite file, or postgresql://USER:PASSWORD@HOST:PORT/NAME")
    p.add_argument("--batch-max", type=int, default=2000, metavar="N", help="messages per transaction, at most")
    p.add_argument("--batch-ms", type=float, default=200.0, metavar="MS",
                   help="longest a received message waits for its transaction")
    p.add_argument("--hwm", type=int, default=200_000, metavar="N",
                   help="messages ZeroMQ keeps for the store while it commits; beyond it they are lost (and recorded as a gap)")
    p.add_argument("--retain-days", type=float, default=None, metavar="D",
                   help="delete everything received more than D days ago (default: keep)")
    p.add_argument("--retain-crops-days", type=float, default=None, metavar="D",
                   help="delete crop images received more than D days ago (default: as --retain-days)")
    p.add_argument("--max-size", default=None, metavar="SIZE",
                   help="keep the database under SIZE (e.g. 500M, 20G): oldest crops first, then the oldest rows")
    p.add_argument("--retention-interval", type=float, default=60.0, metavar="S",
                   help="seconds between retention checks")
    p.add_argument("--curve-server-key", default=None, metavar="FILE",
                   help="the publisher's public key file (NAME.key) for CurveZMQ")
    p.add_argument("--curve-client-key", default=None, metavar="FILE",
                   help="this subscriber's secret key file (NAME.key_secret) for CurveZMQ")
    p.add_argument("--quiet", action="store_true", help="do not print gaps and restarts on stderr")
    p.set_defaults(func=run)


def parse_size(text: str, what: str) -> int:
    from inspectd.errors import InspectdError

    m = _SIZE.match(text)
    if not m:
        raise InspectdError(f"{what} {text!r}: expected a size such as 500M or 20G")
    value = float(m.group(1)) * 1024 ** "_kmgt".index((m.group(2) or "_").lower())
    if value < 1024 * 1024:
        raise InspectdError(f"{what} {text!r}: must be at least 1M")
    return int(value)


def run(args: argparse.Namespace) -> int:
    from inspectd.bus.curve import CurveClient
    from inspectd.errors import InspectdError
    from inspectd.stop_signals import StopSignals
    from inspectd.store.database import connect
    from inspectd.store.migrations import current_version, migrate
    from inspectd.store.retention import RetentionPolicy
    from inspectd.store.service import StoreOptions, StoreService

    if args.batch_max < 1:
        raise InspectdError(f"--batch-max {args.batch_max}: must be at least 1")
    if not args.batch_ms > 0:
        raise InspectdError(f"--batch-ms {args.batch_ms}: must be more than 0")
    if args.hwm < 1:
        raise InspectdError(f"--hwm {args.hwm}: must be at least 1")
    for opt, value in (("--retain-days", args.retain_days), ("--retain-crops-days", args.retain_crops_days)):
        if value is not None and not value > 0:
            raise InspectdError(f"{opt} {value:g}: must be more than 0")
    if not args.retention_interval > 0:
        raise InspectdError(f"--retention-interval {args.retention_interval:g}: must be more than 0")
    if (args.curve_server_key is None) != (args.curve_client_key is None):
        raise InspectdError("CurveZMQ needs both --curve-server-key and --curve-client-key")
    max_bytes = parse_size(args.max_size, "--max-size") if args.max_size is not None else None
    policy = RetentionPolicy(
        max_age_s=args.retain_days * 86400 if args.retain_days else None,
        crops_max_age_s=args.retain_crops_days * 86400 if args.retain_crops_days else None,
        max_bytes=max_bytes, interval_s=args.retention_interval)
    curve = CurveClient.load(args.curve_server_key, args.curve_client_key) if args.curve_server_key else None

    db = connect(args.db)
    service: StoreService | None = None
    try:
        migrate(db)
        version = current_version(db)
        err = sys.stderr

        def on_gap(gap) -> None:
            if not args.quiet:
                print(f"inspectd store: {gap.describe()}", file=err, flush=True)

        service = StoreService(db, args.address, StoreOptions(args.batch_max, args.batch_ms, args.hwm, policy),
                               curve=curve, on_gap=on_gap)
        try:
            with StopSignals() as stop:      # caught before the line that says we are listening
                print(f"inspectd store: {', '.join(service.endpoints)} -> {db.where} (schema version {version})",
                      file=err, flush=True)
                service.run(stop)
        except Exception as exc:      # the database failed under us: say so in one line, exit 1
            if isinstance(exc, InspectdError):
                raise
            raise InspectdError(f"--db {db.where}: write failed: {type(exc).__name__}: "
                                f"{(str(exc).strip().splitlines() or [''])[0]}", exit_code=1) from exc
        finally:
            service.close()
        w = service.writer
        print(f"inspectd store: {w.committed} messages in {w.batches} transactions, {w.gaps} gaps recorded",
              file=err, flush=True)
    finally:
        # A transaction still running on the committer's thread (the database stopped answering)
        # keeps the connection: closing it under the call could crash; the process exits anyway.
        if service is None or not service.committing:
            db.close()
    return 0

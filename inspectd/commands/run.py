"""``inspectd run``: the inspection service, as systemd (or a terminal) runs it."""
from __future__ import annotations

import argparse

NAME = "run"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="run the inspection service from a config file",
        description=(
            "Run the inspection service: frames from the configured source go through the "
            "ring buffer and the model, and every verdict (and every uninspected frame) is "
            "published on the event bus. Under systemd (Type=notify) it reports READY, STATUS, "
            "WATCHDOG and STOPPING over NOTIFY_SOCKET. A recording as the source is paced at its "
            "frame rate, like a camera, and ends the service at its end unless source.loop is set. "
            "SIGTERM or SIGINT: stop acquiring, finish the frames in flight, publish their "
            "verdicts, exit 0. Before it starts it makes the checks of `inspectd check-config`: a "
            "wrong config (or a file or device it names: model, recording, GenTL producer, GPU) "
            "exits 78, which the systemd units do not restart; a failure while running (camera "
            "lost or not found, address in use) exits 1, so that systemd restarts the service."
        ),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="the daemon config (YAML); see docs/config.md")
    p.add_argument("--camera", metavar="ID", help="override the config's camera id (the template unit passes %%i)")
    p.add_argument("--publish", metavar="ADDRESS",
                   help="override bus.publish: the ZeroMQ address to bind, e.g. tcp://*:5555")
    p.add_argument("--model", metavar="CKPT", help="override inference.model")
    p.add_argument("--log-format", choices=["auto", "json", "console"], help="override log.format")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="override log.level")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.commands.options import apply_common_overrides, given_options
    from inspectd.config import load_config
    from inspectd.errors import EXIT_CONFIG, ConfigError, InspectdError, RunError
    from inspectd.logging_setup import configure_logging
    from inspectd.runtime.preflight import preflight

    cfg = load_config(args.config)
    apply_common_overrides(cfg, args)
    if args.log_format:
        cfg.log.format = args.log_format
    if args.log_level:
        cfg.log.level = args.log_level
    configure_logging(cfg.log, fields={"camera": cfg.camera})
    # What check-config checks, by the same code: a config error exits 78 before anything starts.
    checked = preflight(cfg, args.config, given_options(args))

    from inspectd.runtime.pipeline import Pipeline

    try:
        # A recording (kind video/folder) is paced at its frame rate, like the camera it stands in for.
        pipeline = Pipeline(cfg, realtime=None, source=checked.source, backend=checked.backend,
                            self_test=not checked.self_tested, capacity=checked.capacity)
    except InspectdError as exc:
        if isinstance(exc, (ConfigError, RunError)) or exc.exit_code == EXIT_CONFIG:
            raise                              # the camera's own frame size: the ring, the self-test
        # Left after the checks: opening the camera, binding the socket. A restart may cure those.
        raise RunError(str(exc)) from None
    result = pipeline.run()
    # A fatal error has been logged once by the pipeline (as JSON in the journal); the exit
    # code (1, or 78 for a configuration error found only at run time) tells systemd whether
    # a restart can help.
    return result.exit_code

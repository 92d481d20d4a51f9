"""The exceptions that reach the user as a single line, and the exit statuses they map to.

One rule for every command (docs/cli.md, and each command's ``--help``):

- 0 ``EXIT_OK``: done.
- 1 ``EXIT_FAILURE``: a failure at run time (the camera lost or not found, an address in use,
  a disk full, a stream that breaks off). systemd restarts the service.
- 2 ``EXIT_USAGE``: the command line is wrong: an unknown option, a missing or malformed
  argument, or a file that a command's own argument names (``replay FILE``, ``--out``,
  ``--annotate``, ``cameras --cti``).
- 78 ``EXIT_CONFIG`` (sysexits' EX_CONFIG): the configuration is wrong: the config file, a
  value in it or in an option of ``run``/``replay`` that stands in for one (``--model``,
  ``--camera``, ``--publish``), or a file or device they name (the model, the recording, the GenTL
  producers, the keys, a GPU), or sizes that cannot fit in memory. Restarting cannot fix it:
  the units' ``RestartPreventExitStatus`` stops the restart loop.
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78


class InspectdError(Exception):
    """A user-facing error: the message names what is wrong and where.

    The CLI prints ``inspectd: <message>`` on stderr and exits with ``exit_code``;
    no traceback is shown. Raise it for bad input (files, config values, models,
    devices); let programming errors propagate as ordinary exceptions. Where the input
    came from decides the status: ``ConfigError`` for the configuration (78), the default
    for the command line (2); ``RunError`` for a failure while running (1). An error raised
    with ``exit_code=78`` counts as a configuration error wherever it is caught.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(InspectdError):
    """The command line is wrong, or a file one of its arguments names."""

    exit_code = EXIT_USAGE


class ConfigError(InspectdError):
    """The configuration is wrong: the file (unreadable, unknown or duplicate key, bad
    value) or what it names (model, recording, GenTL producer, keys, device, sizes).

    Exit status 78 (EX_CONFIG, as systemd names it): restarting cannot fix it, so the unit's
    ``RestartPreventExitStatus=78`` stops the restart loop.
    """

    exit_code = EXIT_CONFIG


class RunError(InspectdError):
    """A failure while running (or while opening the camera or binding the socket at start):
    the kind of trouble a restart may cure."""

    exit_code = EXIT_FAILURE

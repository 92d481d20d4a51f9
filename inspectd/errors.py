"""The one exception type that reaches the user as a single line."""


class InspectdError(Exception):
    """A user-facing error: the message names what is wrong and where.

    The CLI prints ``inspectd: <message>`` on stderr and exits with ``exit_code``;
    no traceback is shown. Raise it for bad input (files, config values, models,
    devices); let programming errors propagate as ordinary exceptions.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

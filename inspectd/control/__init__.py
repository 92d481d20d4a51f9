"""The daemon's control socket: the line tells it when coils start and end.

``config`` (the ``control`` config section), ``server`` (the REP socket's thread in the
daemon), ``client`` (one request from ``inspectd coil``). Requests and replies are single
JSON objects; see docs/events.md, "Coils".
"""

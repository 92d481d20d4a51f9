"""The defect event bus: ZeroMQ PUB of verdicts, defects, uninspected stretches, heartbeats, status.

``messages`` (topics, payloads, sequence numbers), ``publisher`` (the non-blocking PUB
thread), ``subscriber`` (receiving and gap detection), ``curve`` (CurveZMQ keys),
``proxy`` (XSUB to XPUB), ``config`` (the ``bus`` config section), ``address`` (parsing).
The wire format is documented in docs/events.md and inspectd/schemas/events.schema.json.
"""

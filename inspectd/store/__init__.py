"""The event store: every bus message kept in SQLite (one file) or PostgreSQL.

``database`` opens either kind behind one small interface, ``migrations`` holds the schema
as numbered steps for both dialects, ``writer`` turns messages into rows and detects the
gaps, ``retention`` deletes by age and size (crops first), ``service`` is the subscriber loop
of ``inspectd store``, and ``read`` is what ``inspectd web`` asks of the data.
"""

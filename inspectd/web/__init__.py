"""``inspectd web``: read-only pages over the store's database (``app``), coil grades (``grades``),
Jinja2 templates and static files beside them (no build step)."""

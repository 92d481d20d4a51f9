"""Plain data the runtime makes and the bus encodes: frames' metadata, verdicts, and where a
frame lies on the strip and when it passes the reject gate.

Below both ``inspectd.runtime`` and ``inspectd.bus``: these modules import nothing from the
rest of the package (tests/test_layers.py checks it), so either side can use them without
importing the other.
"""

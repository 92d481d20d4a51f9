"""inspectd: real-time surface-defect inspection for hot-rolled steel strip."""

__version__ = "0.1.0"

"""likeness: forensic analysis of likeness (portrait-rights) cases built on AI face-swaps."""

__version__ = "0.1.0"

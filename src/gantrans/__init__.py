"""gantrans: config-driven unpaired image-to-image translation."""

__version__ = "0.1.0"

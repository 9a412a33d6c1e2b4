"""Hydra configs shipped with gantrans (the top-level configs/ folder of the repository)."""

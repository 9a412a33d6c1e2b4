"""The training loop (`gantrans train`), its state and step, and what it reports."""

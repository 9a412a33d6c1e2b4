"""Scoring translations and samples: `gantrans evaluate`, its judges, metrics and reports."""

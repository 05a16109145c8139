"""Gradient-shattering measurement for any model (filled in by the monitor issue)."""

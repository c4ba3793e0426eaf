"""Composition root: settings, CLI, process wiring and logging."""

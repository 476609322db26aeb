"""The ``steepest reproduce`` targets that live in their own module, one target per module."""

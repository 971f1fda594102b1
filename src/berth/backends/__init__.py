"""Backends run instances; the reconciler talks to them only through `Backend`."""

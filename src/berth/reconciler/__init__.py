"""The reconciler: the only code that moves endpoints and instances between states."""

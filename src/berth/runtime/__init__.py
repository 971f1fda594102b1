"""Instance runtime: the HTTP server inside each instance process that serves one model.

Start it with `python -m berth.runtime`; see `berth.runtime.__main__` for the options.
"""

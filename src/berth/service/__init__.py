"""Management operations shared by the REST API and the web UI.

Each function takes an open session and the calling Principal, checks permissions,
records the desired state and returns ORM rows; the reconciler does the rest.
"""

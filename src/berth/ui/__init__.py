"""The web UI: server-rendered pages for the screens of the product guide.

Pages are Jinja2 templates filled from the service layer. Every change a user makes
goes from the browser to the REST API with `fetch`, authenticated by the session cookie
that `POST /api/v1/auth/login` sets, so the UI and the API share one set of rules.
"""

from berth.ui.app import UI_PREFIX, create_ui

__all__ = ["UI_PREFIX", "create_ui"]

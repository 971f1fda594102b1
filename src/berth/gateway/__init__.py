"""The gateway: authenticates prediction requests by endpoint key and forwards them
to a ready instance of the endpoint."""

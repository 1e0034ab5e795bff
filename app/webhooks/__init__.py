"""Webhooks: a project's URLs that receive signed job events, sent from an outbox by a thread
of the API process (app.webhooks.sender), never inside a request."""

"""Secrets and credentials: the secret box, an instance's CA, access tokens, and the announcements
of callers that changed."""

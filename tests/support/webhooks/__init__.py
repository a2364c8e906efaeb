"""Signed provider webhooks as each provider builds them, for the webhook and feedback API tests."""

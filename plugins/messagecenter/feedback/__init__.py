"""Delivery feedback: what happens to a message after the provider accepted it.

Pure domain code (no Airflow, no database): ``types`` holds Campaign's failure types and reasons,
``verp`` signs each e-mail's return path with its event id so that a bounce finds its event and a
forged one does not, ``bounces`` reads an inbound bounce, complaint or auto-reply (RFC 3464 DSN,
RFC 5965 ARF, legacy formats through ``flufl.bounce``) into a report that never raises, and
``qualification`` turns an error text into a failure type and reason with Campaign's rules on
normalised text (the same rules for synchronous SMTP refusals and asynchronous bounces).
Provider webhooks live in ``webhooks``.
"""

"""The development stack: ``make demo`` on an embedded PostgreSQL, local mail and provider sinks.

Development only: nothing in ``plugins/messagecenter`` imports it, and its requirements
(``requirements-dev.txt``) are not production requirements.
"""

"""Test helpers that start real servers for the tests (not fixtures of one module)."""

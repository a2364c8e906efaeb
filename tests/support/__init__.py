"""Shared test support: sinks, builders and servers; no test module imports another."""

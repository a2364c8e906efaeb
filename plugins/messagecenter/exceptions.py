"""Package exceptions: driver and configuration errors become these at one boundary."""

from __future__ import annotations


class MessageCenterError(Exception):
    """Base class of every error Message Center raises on purpose."""


class ConfigError(MessageCenterError):
    """A setting (environment variable or connection) is missing or invalid."""


class SchemaError(MessageCenterError):
    """The database schema is not what this code expects (too old, too new, or altered)."""


class EventNotFound(MessageCenterError):
    """No event with that id in that queue."""


class TemplateError(MessageCenterError):
    """A template file is invalid (nothing of it is loaded), or a publication conflicts with the database."""


class RenderError(MessageCenterError):
    """A template failed to render for one event (missing ctx key, sandbox violation, runtime error)."""

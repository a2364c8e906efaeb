"""Package exceptions, and the one rule that says whether a failed step is worth retrying.

Driver and configuration errors become these at one boundary. A :class:`PermanentError` (a missing
connection, a schema that is not current, an invalid template) fails the same way on every retry,
so the Airflow layer fails the task at once; anything else (a late writer, an unreachable database)
keeps Airflow's retries.
"""

from __future__ import annotations

import psycopg


class MessageCenterError(Exception):
    """Base class of every error Message Center raises on purpose."""


class PermanentError(MessageCenterError):
    """Retrying cannot help: an operator must fix something first."""


class TransientError(MessageCenterError):
    """Worth another try later: the same step may succeed once the situation has passed."""


class ConfigError(PermanentError):
    """A setting (environment variable or connection) is missing or invalid."""


class SchemaError(PermanentError):
    """The database schema is not what this code expects (too old, too new, or altered)."""


class TemplateError(PermanentError):
    """A template file is invalid (nothing of it is loaded), or a publication conflicts with the database."""


class EventNotFound(MessageCenterError):
    """No event with that id in that queue."""


class RenderError(MessageCenterError):
    """A template failed to render for one event (missing ctx key, sandbox violation, runtime error).

    It fails that event alone (Delivery failed), never a task.
    """


# SQLSTATE classes that no retry fixes: 28 bad credentials, 3D no such database, 42 a statement that
# does not fit the schema (a table or column missing: the schema is not upgraded).
_PERMANENT_SQLSTATE_CLASSES = frozenset({"28", "3D", "42"})


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` will happen again on a retry of the same step.

    Our own errors say so by their class; a database error by its SQLSTATE class. Everything else,
    connection failures above all, is treated as transient.
    """
    if isinstance(exc, PermanentError):
        return True
    if isinstance(exc, psycopg.Error):
        sqlstate = exc.sqlstate or ""
        return sqlstate[:2] in _PERMANENT_SQLSTATE_CLASSES
    return False

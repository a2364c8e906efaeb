"""The control instance's logic: ``archiving`` (copy every execution instance's events into the
archive) and ``registry`` (which execution instances exist, read from what a DAG file may see)."""

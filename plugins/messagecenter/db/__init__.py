"""The databases' shape: versioned DDL (``schema``) and every named SQL statement (``queries``)."""

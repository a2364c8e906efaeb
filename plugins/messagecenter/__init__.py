"""Message Center on Airflow: transactional messaging (Adobe Campaign Classic Message Center) as DAGs.

Modules are named for what they do: ``config`` (settings), ``db`` (connections), ``schema`` (versioned
DDL), ``store`` (event queues), ``api`` (intake API), ``cli`` (``python -m messagecenter``).
"""

from __future__ import annotations

__version__ = "0.1.0"

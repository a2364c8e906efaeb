"""Message Center on Airflow: transactional messaging (Adobe Campaign Classic Message Center) as DAGs.

Subpackages are named for what they hold. Without Airflow: ``core`` (settings, errors, ids, types),
``db`` (versioned DDL, named SQL), ``intake`` (the push contract, the event queues, Campaign's
SOAP), ``execution`` (the execution workflows' steps), ``delivery`` (transports and provider
guards), ``templates``, ``control`` (what the control instance does: archiving) and ``monitoring``
(the doctor's checks, the page's indicators, the heartbeat rule). On top: ``airflow`` (operators,
hooks, connections, the instance registry, the readers of the doctor and the page, operator
actions), ``api`` (the intake API, SOAP, the UI page) and ``cli`` (``python -m messagecenter``).
"""

from __future__ import annotations

__version__ = "0.1.0"

"""What every part of Message Center shares: ``settings``, ``errors``, ``ids`` and ``types``
(queues, channels, statuses, the claimed-event row). Nothing here knows Airflow."""

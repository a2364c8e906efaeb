"""What the control instance does: ``archiving`` (copy every execution instance's events and delivery
logs into its archive). Which instances exist is read on the Airflow side
(``messagecenter.airflow.registry``); how the deployment fares, in ``messagecenter.monitoring``."""

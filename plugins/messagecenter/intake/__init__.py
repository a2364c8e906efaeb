"""Intake: the contract of a push (``decode``) and the event store of the two queues (``store``)."""

"""The orchestrator: carries the engine's decisions out, one PostgreSQL transaction at a time.

- ``batch.py``: a batch of events (Kafka or local completions) in one transaction, each event
  decided by the pure engine against the runs as the batch has left them;
- ``runs.py``: runs started by data, by hand and by other runs' outputs;
- ``completions.py``: attempts that ended;
- ``claims.py``: queued tasks moved to running, for local attempts or remote workers;
- ``timers.py``: due retries, expired leases, missed deadlines;
- ``working_set.py``, ``journal.py``, ``outgoing.py``: what a transaction changes, the log and
  status events of each change, and every event Tributary publishes;
- ``reliable.py``: what a failure to apply a batch means (retry, or a dead letter);
- ``work_hub.py``: who to wake once a commit made work available.
"""

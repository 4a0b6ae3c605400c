"""Pure logic of the Kinesis micro-batch pattern (no Airflow, no network).

``events``      validation and enrichment of browsing-session events, error records
``routing``     which dataset an event lands in (USA vs international), as strategy classes
``batching``    batch boundaries: time (the run's interval), record count and bytes
``checkpoint``  per-shard checkpoints, pending claims, the batch ledger, resharding order
``reader``      the deterministic round-robin reader over any ``ShardSource`` (and its replay)
"""

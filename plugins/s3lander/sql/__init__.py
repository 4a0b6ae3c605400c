"""Pure logic of the SQL -> S3 pattern: table configs, identifiers, queries, type mapping.

Nothing here opens a connection or imports Airflow, so every rule is unit-tested directly.
"""

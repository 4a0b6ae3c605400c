"""Pure logic of SFTP file landing: source configs, discovery, stable-file rules, safe names, the ledger.

Nothing here does I/O: the hook (``s3lander.hooks.sftp_fast``) lists and reads, the operator
(``s3lander.operators.sftp_to_s3``) decides with these functions, so every rule is unit-tested
without a server.
"""

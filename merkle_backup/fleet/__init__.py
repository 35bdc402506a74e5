"""Every backup of a storage location at once.

``sweep``: ``audit`` and ``seal-all`` over a location, a row per backup; ``seal_logged``:
``seal-all --log``; ``audit_run``: audit's fleet options around ``sweep`` (``shard``: --shard,
--results, audit-merge; ``state``: --state; ``metrics``: --metrics; ``attest``: --attest, DSSE).
"""

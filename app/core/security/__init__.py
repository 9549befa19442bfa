"""Framework-independent security building blocks for the public webhook endpoint.

``signatures`` verifies signed deliveries, ``ip`` resolves and allowlists client
addresses, ``ratelimit`` enforces per-key GCRA limits. Nothing here imports Litestar
or touches the database, so every rule can be tested in isolation.
"""

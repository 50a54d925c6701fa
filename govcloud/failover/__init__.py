"""Three-site quorum failover: the pure decision core (model, decide, runbook); no I/O here.

Probing, executing runbooks and drills live in services/adapters; they feed snapshots in and carry
decisions out. The rules are written down in docs/failover.md.
"""

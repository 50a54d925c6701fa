"""Migration: the per-system state machine (pure), the audit hash chain (pure), and later the executor."""

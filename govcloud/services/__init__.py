"""Services: what a command does, between the thin CLI and the pure core and adapters."""

"""Service names: the pure rules for switching them by RFC 2136 update (docs/dns.md)."""

"""Inventories: strict YAML reading, schema and cross-file validation, the frozen model."""

from govcloud.inventory.loader import (
    ValidationReport,
    load_inventory,
    validate_inventory,
)

__all__ = ["ValidationReport", "load_inventory", "validate_inventory"]

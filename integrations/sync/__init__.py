"""The sync engine: how a captured lead becomes a Dynamics Lead or Contact record."""

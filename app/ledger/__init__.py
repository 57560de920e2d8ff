"""The ledger: one SQLite file per repository (schema, typed rows, every SQL statement, reports)."""

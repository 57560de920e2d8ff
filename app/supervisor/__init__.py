"""The supervisor: one headless process per repository that watches what nobody else does."""

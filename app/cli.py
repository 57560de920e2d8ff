"""The `cockpit` command."""
from __future__ import annotations


def main() -> int:
    print("cockpit")
    return 0

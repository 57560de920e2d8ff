"""One error hierarchy: every failure the cockpit expects derives from CockpitError, in one of
two kinds that map to the CLI's exit statuses, so a caller catches one type.

- UsageError (exit 2): the request cannot be done as asked: bad input, a refusal, a state that
  forbids it (ActionError, RunRefused, GitError, ConfigError, TsvFormatError, AgentError, ...).
- InfraError (exit 3): something the cockpit relies on failed: the ledger, tmux, a backend
  (LedgerError, RunInfraError, BackendUnavailable, PaneError, ...).
"""
from __future__ import annotations

EXIT_OK, EXIT_USAGE, EXIT_INFRA = 0, 2, 3


class CockpitError(Exception):
    """An expected failure: one line for a human, and the exit status it maps to."""

    exit_code: int = EXIT_INFRA


class UsageError(CockpitError):
    """The request cannot be done as asked (exit 2)."""

    exit_code = EXIT_USAGE


class InfraError(CockpitError):
    """Something the cockpit relies on failed (exit 3)."""

    exit_code = EXIT_INFRA

"""Shared pytest setup: the helper modules in this folder (gitrepo, runnerhelpers, tuifixtures, ...)
are importable from every test folder (`pythonpath` in pyproject.toml); unit/ tests the UI-free core,
tui/ the Textual app under Pilot, e2e/ real tmux, real training and the demo."""

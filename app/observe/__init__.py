"""Vanilla agents: run.log and results.tsv in worktrees become experiments; results.tsv in and out."""

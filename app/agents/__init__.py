"""Agents: worktrees and branches, tmux panes, kickoff prompts, the built-in search agent."""

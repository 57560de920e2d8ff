"""What an agent is changing right now: its worktree's uncommitted train.py diff against the
branch head, Python-highlighted, reloaded whenever the watcher sees train.py change."""
from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static
from textual.worker import get_current_worker

from app.tui.messages import AgentDiff
from app.tui.widgets.diff_view import DiffResult, DiffView, parse_diff
from app.tui.widgets.experiments_table import one_line


def uncommitted_diff(agent: str, worktree: str) -> DiffResult:
    """The diff, parsed, or why there is none; never raises. Runs git: call it in a worker."""
    from app import git

    title = f"train.py in agent {one_line(agent)}'s worktree, not yet committed"
    try:
        head = git.head_sha(worktree, short=True)
        text = git.diff_text(worktree)
    except git.GitError as exc:
        return DiffResult(title, problem=f"Cannot diff {worktree}: {exc}")
    title += f" (against the branch head {head})"
    if not text.strip():
        return DiffResult(title, problem="No uncommitted change: train.py is as committed.")
    return parse_diff(title, text)


class AgentDiffModal(ModalScreen[None]):
    """Escape closes; the diff follows the agent's edits while open."""

    BINDINGS = [Binding("escape,q,e", "dismiss", "Close", id="agent_diff.close")]

    class _Loaded(Message):
        def __init__(self, result: DiffResult) -> None:
            super().__init__()
            self.result = result

    def __init__(self, agent: str, worktree: str) -> None:
        super().__init__(classes="modal")
        self.agent = agent
        self.worktree = worktree

    def compose(self) -> ComposeResult:
        with Vertical(id="agent-diff-dialog", classes="dialog"):
            yield Static(Text(f"Agent {one_line(self.agent)}: train.py edits"), classes="dialog-title")
            yield DiffView(id="agent-diff")

    def on_mount(self) -> None:
        self.query_one(DiffView).focus()
        self._load()

    @work(thread=True, exclusive=True, group="agent-diff", exit_on_error=False)
    def _load(self) -> None:
        result = uncommitted_diff(self.agent, self.worktree)
        if not get_current_worker().is_cancelled:
            self.post_message(self._Loaded(result))

    @on(_Loaded)
    def _show(self, message: _Loaded) -> None:
        self.query_one(DiffView).set_diff(message.result)

    def on_agent_diff(self, message: AgentDiff) -> None:
        if message.agent == self.agent:
            self._load()

"""A unified diff of train.py, Python-highlighted, with added/removed/hunk lines styled from tcss.

Also the git look-ups the detail and compare screens share: which repository holds an
experiment's commits, and the diff between two revisions with a readable message when it cannot
be made (a deleted worktree, a commit that is gone, no git).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from textual.containers import VerticalScroll
from textual.content import Content
from textual.highlight import highlight
from textual.style import Style
from textual.widgets import Static

from app import git
from app.textsafe import sanitize

MAX_DIFF_LINES = 5000  # lines of a diff shown; the rest is cut with a note


@dataclass(frozen=True)
class DiffResult:
    """A diff, or why there is none; `title` says which revisions were compared."""

    title: str
    text: str | None = None
    problem: str = ""


def find_repo(candidates: Iterable[str | Path]) -> Path | None:
    """The main worktree of the first candidate folder that is inside a git repository."""
    for candidate in candidates:
        if not candidate or not Path(candidate).exists():
            continue
        try:
            return git.main_worktree(Path(candidate))
        except git.GitError:
            continue
    return None


def train_py_diff(repo: Path | None, rev_a: str, rev_b: str, title: str) -> DiffResult:
    """train.py from `rev_a` to `rev_b` in `repo`; never raises."""
    if repo is None:
        return DiffResult(title, problem="No git repository found: the experiment's worktree is gone "
                                         "and the ledger is not inside a repository.")
    if not rev_a or not rev_b:
        return DiffResult(title, problem="No commit recorded for this experiment, so there is "
                                         "nothing to diff.")
    for rev in (rev_a, rev_b):
        try:
            git.rev_parse(repo, rev)
        except git.GitError:
            return DiffResult(title, problem=f"Commit {rev[:10]} is not in the repository at {repo}: "
                                             "it was garbage-collected, or never existed there.")
    try:
        return DiffResult(title, text=git.diff_between(repo, rev_a, rev_b))
    except git.GitError as exc:
        return DiffResult(title, problem=f"Cannot diff {rev_a[:10]}..{rev_b[:10]}: {exc}")


class DiffView(VerticalScroll, can_focus=True):
    """Scrollable diff text; empty diffs and failures show a sentence instead."""

    COMPONENT_CLASSES = {"diff-view--added", "diff-view--removed", "diff-view--hunk",
                         "diff-view--header", "diff-view--message"}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.result: DiffResult | None = None

    def compose(self):
        yield Static("loading the diff…", classes="diff-body")

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._show())

    def set_diff(self, result: DiffResult) -> None:
        self.result = result
        self._show()

    @property
    def plain(self) -> str:
        """The text shown, without styles (what a test or a copy would see)."""
        return str(self.query_one(".diff-body", Static).content)

    def _style(self, name: str) -> Style:
        return Style.from_styles(self.get_component_styles(name))

    def _show(self) -> None:
        result = self.result
        if result is None or not self.is_mounted:
            return
        body = self.query_one(".diff-body", Static)
        if result.text is None or not result.text.strip():
            message = result.problem or "train.py is identical in both revisions."
            body.update(Content(f"{result.title}\n\n{message}"))
            return
        body.update(self._render_diff(result.title, sanitize(result.text)))

    def _render_diff(self, title: str, text: str) -> Content:
        text = text.expandtabs().replace("\u2028", " ").replace("\u2029", " ")
        lines = text.rstrip("\n").split("\n")
        note = ""
        if len(lines) > MAX_DIFF_LINES:
            note = f"… {len(lines) - MAX_DIFF_LINES:,} more lines not shown"
            lines = lines[:MAX_DIFF_LINES]
        in_hunk = False
        kinds: list[str] = []
        for line in lines:
            if line.startswith("@@"):
                in_hunk = True
                kinds.append("hunk")
            elif not in_hunk or line.startswith("\\"):
                kinds.append("header")
            else:
                kinds.append({"+": "added", "-": "removed"}.get(line[:1], "context"))
        code = "\n".join(line[1:] if kind in ("added", "removed", "context") else ""
                         for line, kind in zip(lines, kinds))
        code_lines = highlight(code, language="python").split("\n", allow_blank=True)
        code_lines += [Content("")] * (len(lines) - len(code_lines))
        out = [Content(title), Content("")]
        for line, kind, code_line in zip(lines, kinds, code_lines):
            if kind in ("hunk", "header"):
                out.append(Content.styled(line, self._style(f"diff-view--{kind}")))
                continue
            row = Content(line[:1]) + code_line
            if kind != "context":
                row = row.stylize_before(self._style(f"diff-view--{kind}"), 0, len(row))
            out.append(row)
        if note:
            out.append(Content.styled(note, self._style("diff-view--message")))
        return Content("\n").join(out)

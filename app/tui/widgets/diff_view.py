"""A unified diff of train.py, Python-highlighted, with added/removed/hunk lines styled from tcss.

Also the git look-ups the detail and compare screens share: which repository holds an
experiment's commits, and the diff between two revisions with a readable message when it cannot
be made (a deleted worktree, a commit that is gone, no git).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.style import Style
from textual.widgets import Static

from app import git
from app.logs.textsafe import sanitize
from app.tui.widgets.theme_colour import legible_on

MAX_DIFF_LINES = 5000  # lines of a diff shown; the rest is cut with a note


@dataclass(frozen=True)
class DiffLine:
    kind: str  # header | hunk | added | removed | context
    text: str  # the diff line as git printed it (sanitized)
    code: Content  # its code part, Python-highlighted (theme variables, resolved when drawn)


@dataclass(frozen=True)
class DiffResult:
    """A diff, or why there is none; `title` says which revisions were compared."""

    title: str
    text: str | None = None
    problem: str = ""
    lines: tuple[DiffLine, ...] = ()  # the text parsed and highlighted (see parse_diff)
    cut: int = 0  # lines beyond MAX_DIFF_LINES left out


def parse_diff(title: str, text: str) -> DiffResult:
    """Classify and highlight a unified diff; slow for big diffs, so call it in a worker."""
    from textual.highlight import highlight  # pygments: slow to import, so not on the first paint
    text = sanitize(text).expandtabs().replace("\u2028", " ").replace("\u2029", " ")
    rows = text.rstrip("\n").split("\n")
    cut = max(0, len(rows) - MAX_DIFF_LINES)
    rows = rows[:MAX_DIFF_LINES]
    in_hunk = False
    kinds: list[str] = []
    for row in rows:
        if row.startswith("@@"):
            in_hunk = True
            kinds.append("hunk")
        elif not in_hunk or row.startswith("\\"):
            kinds.append("header")
        else:
            kinds.append({"+": "added", "-": "removed"}.get(row[:1], "context"))
    code = "\n".join(row[1:] if kind in ("added", "removed", "context") else ""
                     for row, kind in zip(rows, kinds))
    code_lines = highlight(code, language="python").split("\n", allow_blank=True)
    code_lines += [Content("")] * (len(rows) - len(code_lines))
    lines = tuple(DiffLine(kind, row, code_line) for row, kind, code_line in zip(rows, kinds, code_lines))
    return DiffResult(title, text=text, lines=lines, cut=cut)


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
    """train.py from `rev_a` to `rev_b` in `repo`, parsed; never raises. Runs git: use a worker."""
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
        return parse_diff(title, git.diff_between(repo, rev_a, rev_b))
    except git.GitError as exc:
        return DiffResult(title, problem=f"Cannot diff {rev_a[:10]}..{rev_b[:10]}: {exc}")


class DiffView(VerticalScroll, can_focus=True):
    """Scrollable diff text; empty diffs and failures show a sentence instead."""

    COMPONENT_CLASSES = {"diff-view--added", "diff-view--removed", "diff-view--hunk",
                         "diff-view--header", "diff-view--message", "diff-view--added-mark",
                         "diff-view--removed-mark"}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.result: DiffResult | None = None

    def compose(self) -> ComposeResult:
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

    def mark_style(self, kind: str) -> Style:
        """The +/- sign: bold, black or white on the solid block, whichever contrasts more."""
        block = self.get_component_styles(f"diff-view--{kind}-mark").background
        return Style(background=block, foreground=legible_on(block), bold=True)

    def _show(self) -> None:
        result = self.result
        if result is None or not self.is_mounted:
            return
        body = self.query_one(".diff-body", Static)
        if result.text is not None and result.text.strip() and not result.lines:
            result = self.result = parse_diff(result.title, result.text)
        if not result.lines:
            message = result.problem or "train.py is identical in both revisions."
            body.update(Content(f"{result.title}\n\n{message}"))
            return
        body.update(self._render_diff(result))

    def _render_diff(self, result: DiffResult) -> Content:
        """Assemble the highlighted lines with the tcss styles for added/removed/hunk/header."""
        styles = {kind: self._style(f"diff-view--{kind}")
                  for kind in ("added", "removed", "hunk", "header", "message")}
        styles |= {f"{kind}-mark": self.mark_style(kind) for kind in ("added", "removed")}
        out = [Content(result.title), Content("")]
        for line in result.lines:
            if line.kind in ("hunk", "header"):
                out.append(Content.styled(line.text, styles[line.kind]))
                continue
            if line.kind == "context":
                out.append(Content(" " + line.text[:1]) + line.code)
                continue
            # the +/- sign on a solid block: tells the lines apart where a tint turns black
            # (256 colours) or vanishes (light themes)
            mark = Content.styled(line.text[:1], styles[f"{line.kind}-mark"])
            out.append(Content(" ") + mark + line.code.stylize_before(styles[line.kind], 0, len(line.code)))
        if result.cut:
            out.append(Content.styled(f"… {result.cut:,} more lines not shown", styles["message"]))
        return Content("\n").join(out)

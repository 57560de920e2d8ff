"""tmux for the cockpit: sessions, agent panes beside the cockpit, previews, focus and kill.

Drives the tmux CLI (>= 3.2 for `-e` on new-session) through subprocess. Every function takes
`socket`, a tmux `-L` server name, so tests run against a private server; None means the user's
server (the one in $TMUX when inside tmux). Agent panes carry their name in the pane user option
`@cockpit_agent`, since programs in a pane may overwrite its title.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from app.errors import InfraError

AGENT_OPTION = "@cockpit_agent"  # pane user option holding the agent's name
MIN_PANE_WIDTH = 40  # columns a split may leave each half; below this a new window opens
MIN_PANE_HEIGHT = 8  # rows a split may leave each half
COCKPIT_SHARE = 0.6  # of the window's width the cockpit keeps when agents split beside it ...
MIN_COCKPIT_WIDTH = 80  # ... and at least this many columns; narrower windows: agents in their own window
DEFAULT_SESSION_SIZE = (200, 50)  # columns, rows of a new detached session when there is no terminal

_FIELDS = ("pane_id", "session_name", "window_id", "window_index", "window_active", "pane_active",
           "pane_dead", "pane_pid", "pane_width", "pane_height", "pane_current_command", AGENT_OPTION,
           "pane_title")
_FORMAT = "\t".join(f"#{{{name}}}" for name in _FIELDS)  # title last: it may hold anything

# A shell command line, an argv run without a shell, or None for the default shell.
Command = str | Sequence[str] | None


class PaneError(InfraError):
    """A tmux command failed, or a pane or session is not there."""


@dataclass(frozen=True)
class Pane:
    pane_id: str  # "%N", stable for the pane's life
    session: str
    window_id: str  # "@N"
    window_index: int
    window_active: bool  # its window is the session's current one
    active: bool  # the active pane of its window
    dead: bool  # its process exited but the pane remains (remain-on-exit)
    pid: int
    width: int
    height: int
    command: str  # what runs in it now
    agent: str | None  # the @cockpit_agent option
    title: str


# ---------------------------------------------------------------------------
# Running tmux

def _tmux(socket: str | None, *args: str) -> str:
    """Run one tmux command and return its stdout; PaneError with tmux's message on failure."""
    argv = ["tmux", *(["-L", socket] if socket else []), *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise PaneError("tmux is not installed (no `tmux` on PATH)") from exc
    if proc.returncode != 0:
        message = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise PaneError(f"tmux {args[0]} failed: {message[0]}")
    return proc.stdout


def _parse(line: str) -> Pane:
    values = line.split("\t", len(_FIELDS) - 1)
    f = dict(zip(_FIELDS, values))
    return Pane(
        pane_id=f["pane_id"], session=f["session_name"], window_id=f["window_id"],
        window_index=int(f["window_index"]), window_active=f["window_active"] == "1",
        active=f["pane_active"] == "1", dead=f["pane_dead"] == "1",
        pid=int(f["pane_pid"] or 0), width=int(f["pane_width"]), height=int(f["pane_height"]),
        command=f["pane_current_command"], agent=f[AGENT_OPTION] or None, title=f["pane_title"],
    )


def _launch_args(cmd: Command, cwd: Path | str | None, env: Mapping[str, str] | None) -> list[str]:
    args = ["-P", "-F", "#{pane_id}"]
    if cwd is not None:
        args += ["-c", str(cwd)]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    if cmd is None:
        return args
    return [*args, "--", cmd] if isinstance(cmd, str) else [*args, "--", *cmd]


def _label(pane_id: str, title: str | None, agent: str | None, socket: str | None) -> None:
    try:
        if title is not None:
            _tmux(socket, "select-pane", "-t", pane_id, "-T", title)
        if agent is not None:
            _tmux(socket, "set-option", "-p", "-t", pane_id, AGENT_OPTION, agent)
    except PaneError as exc:
        raise PaneError(f"pane {pane_id} closed before it could be labelled (did its command exit?)") from exc


# ---------------------------------------------------------------------------
# Sessions, windows and panes

def inside_tmux() -> bool:
    """Whether this process runs inside a tmux client's pane."""
    return bool(os.environ.get("TMUX"))


def current_pane() -> str | None:
    """The pane this process runs in, when inside tmux."""
    return os.environ.get("TMUX_PANE") if inside_tmux() else None


def has_session(name: str, socket: str | None = None) -> bool:
    try:
        _tmux(socket, "has-session", "-t", f"={name}")
    except PaneError:
        return False
    return True


def ensure_session(name: str, cmd: Command = None, cwd: Path | str | None = None,
                   env: Mapping[str, str] | None = None, *, title: str | None = None,
                   size: tuple[int, int] | None = None, socket: str | None = None) -> Pane:
    """The first pane of session `name`, creating the session detached with `cmd` in it if needed.

    A new session takes `size` (columns, rows), by default this terminal's, so that agent panes
    split beside the first one get a layout that suits the terminal that will attach.
    """
    if not has_session(name, socket):
        columns, rows = size or shutil.get_terminal_size(DEFAULT_SESSION_SIZE)
        pane_id = _tmux(socket, "new-session", "-d", "-s", name, "-x", str(columns), "-y", str(rows),
                        *_launch_args(cmd, cwd, env)).strip()
        _label(pane_id, title, None, socket)
    return list_panes(name, socket)[0]


def list_panes(session: str | None = None, socket: str | None = None) -> list[Pane]:
    """Panes of one session, or of every session on the server (none when no server runs)."""
    if session is None:
        try:
            out = _tmux(socket, "list-panes", "-a", "-F", _FORMAT)
        except PaneError as exc:
            if "no server running" in str(exc) or "error connecting" in str(exc):
                return []
            raise
    else:
        if not has_session(session, socket):
            raise PaneError(f"no tmux session named {session!r}")
        out = _tmux(socket, "list-panes", "-s", "-t", f"={session}", "-F", _FORMAT)
    return [_parse(line) for line in out.splitlines() if line]


def pane_info(pane_id: str, socket: str | None = None) -> Pane | None:
    """The pane with this id, or None when it is gone."""
    try:
        out = _tmux(socket, "list-panes", "-t", pane_id, "-F", _FORMAT)
    except PaneError:
        return None
    return next((p for p in map(_parse, out.splitlines()) if p.pane_id == pane_id), None)


def _split_plan(panes: list[Pane], target: Pane) -> tuple[str, str, int | None] | None:
    """Which pane to split, how (-h side by side, -v stacked) and the new pane's size (None: half),
    or None when the window is full.

    The cockpit alone gives up a right-hand column of 40 % of the width while it keeps at least
    MIN_COCKPIT_WIDTH columns; after that the largest other pane is halved along its longer side
    (see _halve).
    """
    others = [p for p in panes if p.pane_id != target.pane_id]
    if others:
        return _halve(others)
    keep = max(MIN_COCKPIT_WIDTH, math.ceil(target.width * COCKPIT_SHARE))
    column = target.width - keep - 1  # the border takes one column
    return (target.pane_id, "-h", column) if column >= MIN_PANE_WIDTH else None


def _halve(panes: list[Pane]) -> tuple[str, str, int | None] | None:
    """Halve the largest of `panes` along its longer side, if both halves keep the minimum size."""
    for pane in sorted(panes, key=lambda p: p.width * p.height, reverse=True):
        fits_h = pane.width >= 2 * MIN_PANE_WIDTH + 1
        fits_v = pane.height >= 2 * MIN_PANE_HEIGHT + 1
        order = ("-h", "-v") if pane.width > 2 * pane.height else ("-v", "-h")
        for flag in order:
            if (flag == "-h" and fits_h) or (flag == "-v" and fits_v):
                return pane.pane_id, flag, None
    return None


def _agents_window(session_panes: list[Pane], anchor: Pane) -> list[Pane]:
    """The panes of the newest window of agents (not the cockpit's), or [] when there is none."""
    windows: dict[str, list[Pane]] = {}
    for pane in session_panes:
        if pane.window_id != anchor.window_id:
            windows.setdefault(pane.window_id, []).append(pane)
    agent_windows = [w for w in windows.values() if all(p.agent for p in w)]
    return max(agent_windows, key=lambda w: w[0].window_index) if agent_windows else []


def split_pane(target: str | None = None, cmd: Command = None, cwd: Path | str | None = None,
               env: Mapping[str, str] | None = None, title: str | None = None, *,
               agent: str | None = None, focus: bool = False, socket: str | None = None) -> str:
    """Open a pane running `cmd` beside `target` (default: this process's pane); return its id.

    Splits `target`'s window (see _split_plan) so that the cockpit keeps 60 % of the width; when
    that window is full, the agents' own window is split instead, else a new window opens.
    """
    target = target or (current_pane() if socket is None else None)
    if target is None:
        raise PaneError("no pane to split beside: not inside tmux and no target given")
    anchor = pane_info(target, socket)
    if anchor is None:
        raise PaneError(f"no tmux pane {target}")
    session_panes = list_panes(anchor.session, socket)
    plan = _split_plan([p for p in session_panes if p.window_id == anchor.window_id], anchor)
    if plan is None:
        plan = _halve(_agents_window(session_panes, anchor))
    if plan is None:
        return new_window(anchor.session, cmd, cwd, env, title, agent=agent, focus=focus, socket=socket)
    split_id, flag, size = plan
    pane_id = _tmux(socket, "split-window", flag, "-t", split_id, *([] if focus else ["-d"]),
                    *(["-l", str(size)] if size else []), *_launch_args(cmd, cwd, env)).strip()
    _label(pane_id, title, agent, socket)
    if size:  # the cockpit's own window now has an agents column
        _keep_cockpit_wide(anchor, socket)
    return pane_id


def _keep_cockpit_wide(cockpit: Pane, socket: str | None) -> None:
    """When the window is resized (a client attaches from a smaller terminal), the cockpit takes
    60 % of it again, or MIN_COCKPIT_WIDTH columns when that is more; best effort."""
    narrow = math.ceil(MIN_COCKPIT_WIDTH / COCKPIT_SHARE)
    resize = (f"if -F '#{{e|<:#{{window_width}},{narrow}}}' "
              f"'resize-pane -t {cockpit.pane_id} -x {MIN_COCKPIT_WIDTH}' "
              f"'resize-pane -t {cockpit.pane_id} -x {round(COCKPIT_SHARE * 100)}%'")
    with suppress(PaneError):  # an old tmux without window hooks: the layout just stays as split
        _tmux(socket, "set-hook", "-w", "-t", cockpit.window_id, "window-resized", resize)


def new_window(session: str, cmd: Command = None, cwd: Path | str | None = None,
               env: Mapping[str, str] | None = None, title: str | None = None, *,
               agent: str | None = None, focus: bool = False, socket: str | None = None) -> str:
    """Open a window at the end of `session` running `cmd`; return its pane's id."""
    name = ["-n", title] if title else []
    pane_id = _tmux(socket, "new-window", "-t", f"={session}:", *name, *([] if focus else ["-d"]),
                    *_launch_args(cmd, cwd, env)).strip()
    _label(pane_id, title, agent, socket)
    return pane_id


# ---------------------------------------------------------------------------
# Working with a pane

def capture(pane_id: str, lines: int = 40, socket: str | None = None) -> str:
    """The last `lines` lines of the pane as plain text (no escape sequences, wrapped lines joined)."""
    out = _tmux(socket, "capture-pane", "-p", "-J", "-t", pane_id, "-S", f"-{lines}")
    rows = [row.rstrip() for row in out.splitlines()]
    while rows and not rows[-1]:
        rows.pop()
    return "\n".join(rows[-lines:])


def pane_alive(pane_id: str, socket: str | None = None) -> bool:
    """Whether the pane exists and its process still runs."""
    pane = pane_info(pane_id, socket)
    return pane is not None and not pane.dead


def pane_pid(pane_id: str, socket: str | None = None) -> int:
    """The pid of the process the pane started."""
    pane = pane_info(pane_id, socket)
    if pane is None:
        raise PaneError(f"no tmux pane {pane_id}")
    return pane.pid


def back_hint(socket: str | None = None) -> str:
    """How to get from an agent's pane back to the cockpit, in this server's prefix key."""
    try:
        prefix = _tmux(socket, "show-options", "-gv", "prefix").strip() or "C-b"
    except PaneError:
        prefix = "C-b"
    return f"back to the cockpit: {prefix} ; (last pane) or {prefix} l (last window)"


def select_pane(pane_id: str, socket: str | None = None) -> None:
    """Make the pane its window's active pane and the window its session's current one."""
    _tmux(socket, "select-window", "-t", pane_id)
    _tmux(socket, "select-pane", "-t", pane_id)


def kill_pane(pane_id: str, socket: str | None = None) -> bool:
    """Close the pane (its process gets SIGHUP); False when it was already gone."""
    if pane_info(pane_id, socket) is None:
        return False
    _tmux(socket, "kill-pane", "-t", pane_id)
    return True


def kill_server(socket: str) -> None:
    """Stop a private tmux server (tests) and remove its socket file, also when the server has
    already exited by itself (tmux leaves the file behind then); refuses the default server."""
    if not socket:
        raise ValueError("kill_server needs a private socket name; it never stops the default server")
    path = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / socket
    try:
        path = Path(_tmux(socket, "display-message", "-p", "#{socket_path}").strip())
        _tmux(socket, "kill-server")
    except PaneError as exc:
        if "no server running" not in str(exc) and "error connecting" not in str(exc):
            raise
    if path.is_socket():
        path.unlink(missing_ok=True)

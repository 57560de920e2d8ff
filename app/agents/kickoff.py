"""What an agent starts with: its command line, its environment and its kickoff prompt.

The prompt always goes to `<worktree>/.cockpit-kickoff.md` (excluded from git through the
repository's `info/exclude`, so it never shows as uncommitted work) and its path to
$COCKPIT_KICKOFF. CLIs that take a first prompt as an argument (PROMPT_ARG_AGENTS: claude, codex)
also get it as their last argument, so they start working at once; any other command, and a
plain shell, are expected to read the file. A command that is not installed falls back to a
plain shell ($SHELL, else bash, else sh) and says so.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from app import git
from app.errors import UsageError

KICKOFF_FILE = ".cockpit-kickoff.md"  # the kickoff prompt, in the agent's worktree
PROMPT_ARG_AGENTS = ("claude", "codex")  # CLIs whose first positional argument is a prompt
SEARCH_MODULE = "app.agents.search"  # the built-in search agent
SHELL_META = set(";&|<>()$`*?[]#~{}\n")  # a command with these runs through `sh -c` unchanged
EXCLUDED = (f"/{KICKOFF_FILE}", "/.autoresearch/")  # added to the repository's info/exclude

KICKOFF = """\
You are autoresearch agent `{name}`, one of several agents supervised by a human in the
autoresearch cockpit. Read program.md in this folder and follow it, with these differences:

- Setup is done: you work in the git worktree {worktree} on branch `{branch}` (run tag `{tag}`),
  branched from main. Do not create or switch branches, and never edit prepare.py.
- Run each experiment with
      cockpit run -m "what you changed" --hypothesis "why it should help" --category <kind>
  instead of `uv run train.py > run.log`. Commit train.py first: the commit is what is measured.
  `cockpit run` records the run in the shared ledger ({ledger}), decides keep / discard / crash
  and prints the git command to run next; you do not need to grep run.log or write results.tsv.
- `cockpit history` shows what every agent has tried, `cockpit suggest` what to try next, and
  `cockpit note "lesson"` keeps a lesson for everyone.
- The human may approve, reject or stop your runs; follow what `cockpit run` prints.

Start now: read program.md and train.py, then run the first experiment (the baseline as it is).
Keep experimenting until you are stopped.
"""


class LaunchError(UsageError):
    """The agent command cannot be started at all."""


@dataclass(frozen=True)
class Launch:
    command: str | list[str]  # a shell command line, or an argv run without a shell
    display: str  # what the ledger and the human see
    kind: str  # llm | search | shell
    fallback: str  # why a plain shell runs instead of the asked command; "" when it does not
    prompt_in_argv: bool  # the kickoff prompt is passed as an argument


def kickoff_text(name: str, tag: str, branch: str, worktree: Path, ledger: Path) -> str:
    return KICKOFF.format(name=name, tag=tag, branch=branch, worktree=worktree, ledger=ledger)


def write_kickoff(worktree: Path, text: str) -> Path:
    """Write the kickoff prompt into the worktree and keep git from ever listing it."""
    exclude_from_git(worktree)
    path = worktree / KICKOFF_FILE
    path.write_text(text, encoding="utf-8")
    return path


def exclude_from_git(worktree: Path) -> None:
    """Add EXCLUDED to the repository's shared info/exclude (a local, uncommitted ignore list)."""
    common = git.common_dir(worktree)
    if common is None:
        return
    exclude = common / "info" / "exclude"
    current = exclude.read_text(encoding="utf-8", errors="replace") if exclude.is_file() else ""
    missing = [line for line in EXCLUDED if line not in current.splitlines()]
    if missing:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        prefix = "" if not current or current.endswith("\n") else "\n"
        with open(exclude, "a", encoding="utf-8") as out:
            out.write(prefix + "# autoresearch cockpit\n" + "".join(f"{line}\n" for line in missing))


def cockpit_bin_dir() -> Path:
    """The folder of the interpreter running the cockpit (its venv's bin, where `cockpit` is)."""
    return Path(sys.executable).parent


def agent_path() -> str:
    """PATH for an agent: the cockpit's bin folder first, so `cockpit run` is this cockpit."""
    first = str(cockpit_bin_dir())
    rest = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p and p != first]
    return os.pathsep.join([first, *rest])


def agent_env(name: str, tag: str, ledger: Path, worktree: Path, kickoff: Path) -> dict[str, str]:
    env = {
        "COCKPIT_AGENT": name,
        "COCKPIT_TAG": tag,
        "COCKPIT_LEDGER": str(ledger),
        "COCKPIT_WORKTREE": str(worktree),
        "COCKPIT_KICKOFF": str(kickoff),
        "PATH": agent_path(),
    }
    if os.environ.get("PYTHONPATH"):  # how this cockpit found its code: `cockpit` there needs it too
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def pane_argv(launch: Launch, path: str) -> list[str]:
    """The argv tmux runs: the launch under `env PATH=...`, since tmux gives a new pane the PATH
    of the tmux client that asked for it, whatever `-e PATH=` says."""
    command = launch.command if isinstance(launch.command, list) else ["/bin/sh", "-c", launch.command]
    return ["env", f"PATH={path}", *command]


def plain_shell() -> list[str]:
    for candidate in (os.environ.get("SHELL", ""), "bash", "sh"):
        found = candidate and shutil.which(candidate)
        if found:
            return [found]
    return ["/bin/sh"]


def resolve_launch(requested: str, prompt: str, *, search: bool = False,
                   path: str | None = None) -> Launch:
    """What to run in the agent's pane for `requested` (a command line) or the search agent."""
    if search:
        if importlib.util.find_spec(SEARCH_MODULE) is None:
            raise LaunchError(f"the built-in search agent ({SEARCH_MODULE}) is not part of this install")
        argv = [sys.executable, "-m", SEARCH_MODULE]
        return Launch(argv, f"python -m {SEARCH_MODULE}", "search", "", False)
    requested = requested.strip()
    if not requested:
        raise LaunchError("no agent command: pass --cmd or set agent_command in [tool.cockpit]")
    if SHELL_META & set(requested):
        return Launch(requested, requested, "llm", "", False)
    try:
        argv = shlex.split(requested)
    except ValueError as exc:
        raise LaunchError(f"cannot read the agent command {requested!r}: {exc}") from exc
    if shutil.which(argv[0], path=path or agent_path()) is None:
        shell = plain_shell()
        reason = f"`{argv[0]}` is not installed (not on PATH): started a plain shell ({shell[0]}) instead"
        return Launch(shell, shell[0], "shell", reason, False)
    if Path(argv[0]).name in PROMPT_ARG_AGENTS:
        return Launch([*argv, prompt], requested, "llm", "", True)
    return Launch(argv, requested, "llm", "", False)

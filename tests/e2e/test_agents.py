"""Agents (app/agents/lifecycle.py, `cockpit agent`): real git worktrees, real tmux on a private socket."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import cli
from app.agents import kickoff, panes
from app.agents import lifecycle as agents
from app.agents.kickoff import KICKOFF_FILE, LaunchError, resolve_launch
from app.ledger.store import Ledger
from app.run.procs import process_identity, same_process
from gitrepo import git
from runnerhelpers import make_project
from waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

STAND_IN_COCKPIT = "exec sleep 600"  # pane 0 of a detached session, instead of the TUI


@pytest.fixture
def socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private tmux server, killed afterwards; the test starts outside tmux."""
    for name in ("TMUX", "TMUX_PANE", "COCKPIT_LEDGER", "COCKPIT_AGENT", "COCKPIT_TAG",
                 agents.TMUX_SOCKET_ENV):
        monkeypatch.delenv(name, raising=False)
    name = f"cockpit-agents-{uuid.uuid4().hex[:12]}"
    yield name
    panes.kill_server(name)


@pytest.fixture
def main(tmp_path: Path) -> Path:
    return make_project(tmp_path)


@pytest.fixture
def ledger(main: Path) -> Iterator[Ledger]:
    with Ledger(main / ".autoresearch" / "ledger.db") as led:
        yield led


def env_dumper(tmp_path: Path, name: str = "agent.sh") -> tuple[Path, Path]:
    """A harmless agent: writes its environment, cwd and arguments to a file, then waits."""
    out = tmp_path / f"{name}.env"
    script = tmp_path / name
    script.write_text("#!/bin/sh\n"
                      f'printf "%s\\0" "$@" > "{out}.args"\n'
                      f'{{ env; echo "PWD_NOW=$(pwd)"; }} > "{out}.tmp"\n'
                      f'mv "{out}.tmp" "{out}"\nexec sleep 600\n')
    script.chmod(0o755)
    return script, out


def read_env(path: Path) -> dict[str, str]:
    """The dumped environment, plus ARGS: the arguments joined by newlines."""
    wait_for(path.exists)
    env = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    env["ARGS"] = "\n".join(Path(f"{path}.args").read_text().split("\0")[:-1])
    return env


def create(ledger: Ledger, main: Path, name: str, socket: str, **kwargs) -> agents.CreatedAgent:
    kwargs.setdefault("cockpit_command", STAND_IN_COCKPIT)
    return agents.create_agent(ledger, main, name, socket=socket, **kwargs)


def test_new_outside_tmux_opens_a_session_with_the_cockpit_and_the_agent(
        ledger: Ledger, main: Path, socket: str, tmp_path: Path) -> None:
    script, out = env_dumper(tmp_path)
    created = create(ledger, main, "ada", socket, command=str(script), tag="mar5")
    wt = main / ".autoresearch" / "worktrees" / "ada"
    assert (wt / "train.py").is_file() and not created.inside_tmux and not created.new_window
    head = git(wt, "rev-parse", "HEAD")
    assert head == git(main, "rev-parse", "HEAD") == git(main, "rev-parse", "autoresearch/mar5-ada")
    assert git(wt, "branch", "--show-current") == "autoresearch/mar5-ada"

    agent = ledger.get_agent("ada")
    assert (agent.state, agent.tag, agent.branch, agent.worktree, agent.tmux_socket, agent.kind) == (
        "running", "mar5", "autoresearch/mar5-ada", str(wt.resolve()), socket, "llm")
    session = panes.list_panes(created.session, socket)
    assert created.session == f"cockpit-{main.name}" and len(session) == 2
    cockpit_pane, agent_pane = session
    assert cockpit_pane.title == "cockpit" and cockpit_pane.command == "sleep"
    assert (agent_pane.pane_id, agent_pane.agent) == (agent.pane_id, "ada")
    assert agent_pane.window_id == cockpit_pane.window_id
    assert agent_pane.pid == agent.pid and same_process(agent.pid, agent.pid_start)

    env = read_env(out)
    assert (env["COCKPIT_AGENT"], env["COCKPIT_TAG"]) == ("ada", "mar5")
    assert env["COCKPIT_WORKTREE"] == str(wt.resolve())
    assert env["COCKPIT_LEDGER"] == str(ledger.path.resolve()) and env["PWD_NOW"] == str(wt.resolve())
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["ARGS"] == ""  # not a prompt-taking CLI: the prompt is in the kickoff file
    prompt = Path(env["COCKPIT_KICKOFF"]).read_text()
    assert Path(env["COCKPIT_KICKOFF"]) == wt.resolve() / KICKOFF_FILE
    assert "program.md" in prompt and "autoresearch/mar5-ada" in prompt and "cockpit run" in prompt
    assert git(wt, "status", "--porcelain") == ""  # the kickoff file is never uncommitted work
    assert [e.kind for e in ledger.events()] == ["agent-new", "agent-start"]


def test_a_second_agent_joins_the_existing_session(ledger: Ledger, main: Path, socket: str) -> None:
    first = create(ledger, main, "ada", socket, command="sleep 600")
    second = create(ledger, main, "bo", socket, command="sleep 600")
    assert first.session == second.session
    assert len(panes.list_panes(first.session, socket)) == 3
    assert [a.name for a in ledger.agents()] == ["ada", "bo"]


def test_prompt_taking_cli_from_settings_gets_the_kickoff_as_argument(
        tmp_path: Path, socket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script, out = env_dumper(bin_dir, "claude")
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    main = make_project(tmp_path, config='agent_command = "claude --verbose"\ntag = "exp1"')
    with Ledger(main / ".autoresearch" / "ledger.db") as ledger:
        created = create(ledger, main, "cy", socket)
        args = read_env(out)["ARGS"]
        assert args.startswith("--verbose\nYou are autoresearch agent `cy`") and "program.md" in args
        assert created.launch.prompt_in_argv and ledger.get_agent("cy").command == "claude --verbose"
        assert ledger.get_agent("cy").branch == "autoresearch/exp1-cy"


def test_a_missing_command_falls_back_to_a_shell(ledger: Ledger, main: Path, socket: str) -> None:
    created = create(ledger, main, "dee", socket, command="no-such-agent-cli --fast")
    assert created.launch.kind == "shell"
    assert "`no-such-agent-cli` is not installed" in created.launch.fallback
    assert any("plain shell" in line for line in created.describe())
    pane = panes.pane_info(created.agent.pane_id, socket)
    assert pane is not None and not pane.dead and ledger.get_agent("dee").kind == "shell"


def test_inside_tmux_the_agent_splits_the_current_window_then_opens_a_new_one(
        ledger: Ledger, main: Path, socket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    human = panes.ensure_session("work", STAND_IN_COCKPIT, main, size=(140, 20), socket=socket)
    server = subprocess.run(["tmux", "-L", socket, "display-message", "-p", "#{socket_path},#{pid},0"],
                            capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setenv("TMUX", server)
    monkeypatch.setenv("TMUX_PANE", human.pane_id)
    made = [create(ledger, main, name, socket, command="sleep 600") for name in ("e1", "e2", "e3")]
    assert all(c.inside_tmux and c.session == "work" for c in made)
    windows = [panes.pane_info(c.agent.pane_id, socket).window_id for c in made]
    assert windows[:2] == [human.window_id] * 2 and windows[2] != human.window_id
    assert [c.new_window for c in made] == [False, False, True]
    assert not panes.has_session(f"cockpit-{main.name}", socket)


def test_stop_says_the_running_experiment_ends_with_the_agent(
        ledger: Ledger, main: Path, socket: str) -> None:
    create(ledger, main, "gus", socket, command="sleep 600")
    exp_id = ledger.register(agent="gus", description="x", status="running")
    message = agents.stop_agent(ledger, "gus")
    assert f"its running experiment #{exp_id} ends with it" in message


def test_stop_closes_the_pane_and_keeps_worktree_and_branch(ledger: Ledger, main: Path, socket: str) -> None:
    created = create(ledger, main, "fay", socket, command="sleep 600")
    agent = created.agent
    message = agents.stop_agent(ledger, "fay")
    assert "stopped" in message and panes.pane_info(agent.pane_id, socket) is None
    assert wait_for(lambda: not same_process(agent.pid, agent.pid_start))
    assert Path(agent.worktree).is_dir() and git(main, "branch", "--list", agent.branch)
    assert ledger.get_agent("fay").state == "stopped"
    assert "was not running" in agents.stop_agent(ledger, "fay")
    assert [e.kind for e in ledger.events()][-2:] == ["agent-stop", "agent-stop"]


def test_remove_refuses_uncommitted_work_then_removes_a_clean_worktree(
        ledger: Ledger, main: Path, socket: str) -> None:
    created = create(ledger, main, "gil", socket, command="sleep 600")
    wt = Path(created.agent.worktree)
    (wt / "train.py").write_text((wt / "train.py").read_text() + "# wip\n")
    (wt / "notes.txt").write_text("ideas")
    with pytest.raises(agents.AgentError, match=r"uncommitted work \(train.py, notes.txt\)"):
        agents.remove_agent(ledger, "gil")
    assert wt.is_dir() and panes.pane_alive(created.agent.pane_id, socket)  # refusal touches nothing
    git(wt, "commit", "--quiet", "-am", "work in progress")
    work = git(wt, "rev-parse", "HEAD")
    (wt / "notes.txt").unlink()
    message = agents.remove_agent(ledger, "gil")
    assert "worktree" in message and "branch autoresearch/" in message and "stays" in message
    assert not wt.exists() and panes.pane_info(created.agent.pane_id, socket) is None
    assert str(wt) not in git(main, "worktree", "list")
    assert git(main, "branch", "--list", created.agent.branch)
    assert ledger.get_agent("gil").state == "removed" and ledger.events(kind="agent-remove")

    again = create(ledger, main, "gil", socket, command="sleep 600", tag=created.agent.tag)
    assert again.reused and git(wt, "rev-parse", "HEAD") == work  # the kept branch continues
    assert "continuing the branch" in again.describe()[0]
    agents.stop_agent(ledger, "gil")
    agents.remove_agent(ledger, "gil", delete_branch=True)
    assert not git(main, "branch", "--list", created.agent.branch)
    fresh = create(ledger, main, "gil", socket, command="sleep 600", tag=created.agent.tag)
    assert not fresh.reused and git(wt, "rev-parse", "HEAD") == git(main, "rev-parse", "HEAD")


def test_remove_imports_a_vanilla_agents_untracked_results_first(ledger: Ledger, main: Path,
                                                                  socket: str) -> None:
    (main / ".gitignore").write_text(".autoresearch/\n")  # upstream leaves results.tsv untracked
    git(main, "commit", "--quiet", "-am", "results.tsv and run.log are not ignored")
    created = create(ledger, main, "hal", socket, command="sleep 600")
    wt = Path(created.agent.worktree)
    (wt / "results.tsv").write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                                    "abcdef1\t0.990000\t44.0\tkeep\tbaseline\n")
    message = agents.remove_agent(ledger, "hal")
    assert "results.tsv already recorded" in message and not wt.exists()
    imported = ledger.experiments(agent="hal")
    assert [(e.backend, e.decision, e.val_bpb) for e in imported] == [("import", "keep", 0.99)]


def test_remove_refuses_while_a_run_is_live(ledger: Ledger, main: Path, socket: str) -> None:
    created = create(ledger, main, "ike", socket, command="sleep 600")
    observed = ledger.register(agent="ike", worktree=created.agent.worktree, status="running",
                               backend="observed", runner_pid=None)
    exp_id = ledger.register(agent="ike", worktree=created.agent.worktree, status="running")
    with pytest.raises(agents.AgentError, match=f"#{exp_id} is running"):
        agents.remove_agent(ledger, "ike")
    ledger.update(exp_id, status="finished", decision="keep")
    ledger.update(observed, runner_pid=os.getpid(), runner_start=process_identity(os.getpid()))
    with pytest.raises(agents.AgentError, match=f"#{observed} is running"):  # its writer is alive
        agents.remove_agent(ledger, "ike")
    assert Path(created.agent.worktree).is_dir()


def test_a_worktree_deleted_behind_our_back_is_gone(ledger: Ledger, main: Path, socket: str) -> None:
    created = create(ledger, main, "jo", socket, command="sleep 600")
    shutil.rmtree(created.agent.worktree)
    [status] = agents.agent_statuses(ledger)
    assert status.agent.state == "gone" and ledger.events(kind="agent-gone")
    assert "already gone" in agents.remove_agent(ledger, "jo")
    assert created.agent.worktree not in git(main, "worktree", "list")


def test_an_agent_that_ends_by_itself_is_exited(ledger: Ledger, main: Path, socket: str) -> None:
    create(ledger, main, "kit", socket, command="sleep 1")
    assert wait_for(lambda: agents.agent_statuses(ledger)[0].agent.state == "exited", timeout=10)
    assert not agents.agent_statuses(ledger)[0].alive


def test_a_stale_refresh_never_overwrites_a_humans_stop(ledger: Ledger, tmp_path: Path) -> None:
    """The TUI refreshes a row it read before `cockpit agent stop` landed: the stop stands."""
    ledger.upsert_agent("ivy", worktree=str(tmp_path), state="running", pid=999_999_999, pid_start=1.0)
    stale = ledger.get_agent("ivy")
    ledger.upsert_agent("ivy", event="agent-stop", state="stopped")
    assert agents.refresh_agent(ledger, stale).state == "stopped"
    assert ledger.get_agent("ivy").state == "stopped" and not ledger.events(kind="agent-exited")
    assert not ledger.upsert_agent("ivy", state="gone", expect_state=("running", "starting"))
    assert not ledger.upsert_agent("nobody", state="gone", expect_state="running")
    assert ledger.get_agent("nobody") is None and ledger.get_agent("ivy").state == "stopped"


def test_a_command_that_dies_at_once_leaves_nothing_behind(ledger: Ledger, main: Path, socket: str) -> None:
    with pytest.raises(agents.AgentError, match="could not start agent lou"):
        create(ledger, main, "lou", socket, command="true")
    assert not (main / ".autoresearch" / "worktrees" / "lou").exists()
    assert not git(main, "branch", "--list", "autoresearch/*-lou")
    assert ledger.get_agent("lou").state == "removed" and ledger.events(kind="agent-failed")


def test_names_and_tags_are_checked(ledger: Ledger, main: Path, socket: str) -> None:
    for bad in ("", "a b", "../x", "-x", "x" * 41, "näme", "a.b"):
        with pytest.raises(agents.AgentError, match="not usable"):
            create(ledger, main, bad, socket, command="sleep 600")
    with pytest.raises(agents.AgentError, match="tag"):
        create(ledger, main, "ok", socket, command="sleep 600", tag="nov/22")
    create(ledger, main, "ok", socket, command="sleep 600")
    with pytest.raises(agents.AgentError, match="already exists"):
        create(ledger, main, "ok", socket, command="sleep 600")
    assert agents.default_tag(time.mktime((2025, 11, 22, 12, 0, 0, 0, 0, -1))) == "nov22"
    assert agents.default_tag(time.mktime((2026, 3, 5, 12, 0, 0, 0, 0, -1))) == "mar5"


def test_launch_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    shell_line = resolve_launch("claude --model x | tee out", "PROMPT")
    assert shell_line.command == "claude --model x | tee out" and not shell_line.prompt_in_argv
    monkeypatch.setattr(kickoff, "SEARCH_MODULE", "app.git")  # any importable module
    search = resolve_launch("ignored", "PROMPT", search=True)
    assert search.command == [sys.executable, "-m", "app.git"] and search.kind == "search"
    monkeypatch.setattr(kickoff, "SEARCH_MODULE", "app.no_such_module")
    with pytest.raises(LaunchError, match="search agent"):
        resolve_launch("ignored", "PROMPT", search=True)
    with pytest.raises(LaunchError):
        resolve_launch("  ", "PROMPT")


def test_a_scripted_agent_runs_an_experiment_with_cockpit_run(
        ledger: Ledger, main: Path, socket: str, tmp_path: Path) -> None:
    done = tmp_path / "agent-done"
    script = tmp_path / "scripted-agent.sh"
    script.write_text(
        "#!/bin/sh\n"
        "sed -i 's/^VAL_BPB = .*/VAL_BPB = 0.985000  # agent edit/' train.py\n"
        "git commit --quiet -am 'lower val_bpb'\n"
        f"cockpit run -m 'lower val_bpb' --hypothesis 'scripted' > '{tmp_path}/agent-out.txt' 2>&1\n"
        f"echo $? > '{done}'\nexec sleep 600\n")
    script.chmod(0o755)
    created = create(ledger, main, "max", socket, command=str(script), tag="apr1")
    assert wait_for(done.exists, timeout=60), (tmp_path / "agent-out.txt").read_text()
    assert done.read_text().strip() == "0", (tmp_path / "agent-out.txt").read_text()
    [exp] = ledger.experiments(agent="max")
    wt = Path(created.agent.worktree)
    assert (exp.status, exp.decision, exp.val_bpb, exp.tag) == ("finished", "keep", 0.985, "apr1")
    assert (exp.branch, exp.backend) == ("autoresearch/apr1-max", "local")
    assert exp.commit_sha == git(wt, "rev-parse", "HEAD")
    [status] = agents.agent_statuses(ledger)
    assert status.last.id == exp.id and status.as_dict()["last_experiment"]["decision"] == "keep"


# ---------------------------------------------------------------------------
# The CLI

def cockpit(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_agent_new_list_stop_remove(main: Path, socket: str, capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if "app.commands.agent" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "app.commands.agent"))
    human = panes.ensure_session("work", STAND_IN_COCKPIT, main, size=(200, 50), socket=socket)
    server = subprocess.run(["tmux", "-L", socket, "display-message", "-p", "#{socket_path},#{pid},0"],
                            capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setenv("TMUX", server)
    monkeypatch.setenv("TMUX_PANE", human.pane_id)
    monkeypatch.setenv(agents.TMUX_SOCKET_ENV, socket)
    monkeypatch.chdir(main)

    code, out, _ = cockpit(capsys, "agent", "new", "nia", "--cmd", "sleep 600", "--tag", "t9")
    assert code == 0 and "autoresearch/t9-nia" in out and "beside the cockpit" in out
    code, out, _ = cockpit(capsys, "agent", "new", "nia", "--cmd", "sleep 600")
    assert code == 2
    code, out, _ = cockpit(capsys, "agent", "list", "--json")
    [row] = json.loads(out)
    assert (row["name"], row["state"], row["pane_alive"]) == ("nia", "running", True)
    assert row["branch"] == "autoresearch/t9-nia"
    code, out, _ = cockpit(capsys, "agent", "list")
    assert code == 0 and "nia" in out and "alive" in out and ".autoresearch/worktrees/nia" in out

    wt = Path(row["worktree"])
    (wt / "train.py").write_text("changed\n")
    code, _, err = cockpit(capsys, "agent", "remove", "nia")
    assert code == 2 and "uncommitted work (train.py)" in err and wt.is_dir()
    code, out, _ = cockpit(capsys, "agent", "stop", "nia")
    assert code == 0 and "branch autoresearch/t9-nia stay" in out
    assert panes.pane_info(row["pane_id"], socket) is None
    git(wt, "checkout", "--", "train.py")
    code, out, _ = cockpit(capsys, "agent", "remove", "nia", "--delete-branch")
    assert code == 0 and not wt.exists() and not git(main, "branch", "--list", "autoresearch/t9-nia")
    code, out, _ = cockpit(capsys, "agent", "list")
    assert "no agents" in out
    code, out, _ = cockpit(capsys, "agent", "list", "--all", "--json")
    assert json.loads(out)[0]["state"] == "removed"

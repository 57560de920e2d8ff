"""Vanilla agents (app/observe/worktrees.py): run.log and results.tsv written by hand in real git
worktrees."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import actions
from app.actions import reap_lost
from app.ledger.store import Ledger
from app.observe import runlog as observe_runlog
from app.observe import worktrees as observe
from gitrepo import commit_edit, git, make_repo
from realdata import parse_file
from runnerhelpers import REAL_RUNS, agent_worktree, cockpit, make_project

STARTUP = b"Vocab size: 8,192\nModel config: {'n_layer': 8}\n"
SUMMARY = (b"---\nval_bpb:          0.981234\ntraining_seconds: 300.1\ntotal_seconds:    325.9\n"
           b"peak_vram_mb:     45060.2\nmfu_percent:      39.80\ntotal_tokens_M:   499.6\n"
           b"num_steps:        953\nnum_params_M:     50.3\ndepth:            8\n"
           b"time_budget:      300\ndevice:           cuda\n")
HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"  # upstream's results.tsv columns


def steps(first: int, last: int, loss: float = 4.0) -> bytes:
    return b"".join(f"\rstep {s:05d} ({s / 10:.1f}%) | loss: {loss - s * 0.01:.6f} | lrm: 1.00 | "
                    f"dt: 312ms | tok/sec: 52,480 | mfu: 0.0% | epoch: 1 | remaining: 259s    ".encode()
                    for s in range(first, last + 1))


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


@pytest.fixture(autouse=True)
def fresh_state():
    """Each test starts as a freshly started cockpit process would."""
    observe_runlog._TAILS.clear()
    yield
    observe_runlog._TAILS.clear()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def wt(repo: Path) -> Path:
    path = repo.parent / "ada"
    git(repo, "worktree", "add", "--quiet", "-b", "autoresearch/nov22-ada", str(path))
    commit_edit(path, "train.py", "DEPTH = 8", "DEPTH = 12", "deeper model")
    return path.resolve()


@pytest.fixture
def ledger(repo: Path):
    with Ledger(repo / ".autoresearch" / "ledger.db") as led:
        yield led


def test_vanilla_run_appears_live_then_finishes(ledger: Ledger, wt: Path) -> None:
    runlog = wt / "run.log"
    runlog.write_bytes(STARTUP + steps(0, 3))
    exp_id = observe.observe_run_log(ledger, wt)
    exp = ledger.get(exp_id)
    assert (exp.backend, exp.status, exp.decision) == ("observed", "running", None)
    assert exp.commit_sha == git(wt, "rev-parse", "HEAD") and exp.description == "deeper model"
    assert (exp.branch, exp.agent, exp.tag) == ("autoresearch/nov22-ada", "ada", "nov22")
    assert exp.worktree == str(wt)
    assert Path(exp.log_path).read_bytes() == runlog.read_bytes()
    assert Path(exp.log_path).parent == ledger.path.parent / "logs"
    # step 3 is still open
    assert [s.step for s in ledger.steps(exp_id)] == [0, 1, 2] and exp.last_loss == pytest.approx(3.98)

    append(runlog, steps(4, 9) + b"\nEvaluating...\n" + SUMMARY)
    assert observe.observe_run_log(ledger, wt) == exp_id
    exp = ledger.get(exp_id)
    assert (exp.status, exp.decision, exp.val_bpb, exp.num_steps) == ("finished", None, 0.981234, 953)
    assert exp.summary["device"] == "cuda" and exp.finished_at is not None
    assert ledger.steps(exp_id)[-1].step == 9
    assert Path(exp.log_path).read_bytes() == runlog.read_bytes()
    assert observe.observe_run_log(ledger, wt) == exp_id
    assert len(ledger.experiments()) == 1
    assert [e.kind for e in ledger.events(exp_id)] == ["register", "finish"]


def test_summary_waits_for_complete_lines_and_extras_are_added_later(ledger: Ledger, wt: Path) -> None:
    runlog = wt / "run.log"
    runlog.write_bytes(STARTUP + steps(0, 2) + b"\n" + SUMMARY[:SUMMARY.index(b"num_params_M")])
    exp_id = observe.observe_run_log(ledger, wt)
    assert ledger.get(exp_id).status == "running"  # upstream keys still missing
    cut = SUMMARY.index(b"depth:") + 12
    append(runlog, SUMMARY[SUMMARY.index(b"num_params_M"):cut])
    observe.observe_run_log(ledger, wt)
    assert ledger.get(exp_id).status == "running"  # "depth: " without its line end
    append(runlog, SUMMARY[cut:SUMMARY.index(b"device")])
    observe.observe_run_log(ledger, wt)
    assert ledger.get(exp_id).status == "finished" and "device" not in ledger.get(exp_id).summary
    append(runlog, SUMMARY[SUMMARY.index(b"device"):])
    observe.observe_run_log(ledger, wt)
    assert ledger.get(exp_id).summary["device"] == "cuda" and len(ledger.experiments()) == 1


def test_results_tsv_decides_the_observed_run_and_reimport_adds_nothing(ledger: Ledger, wt: Path) -> None:
    (wt / "run.log").write_bytes(STARTUP + steps(0, 5) + b"\n" + SUMMARY)
    exp_id = observe.observe_run_log(ledger, wt)
    head = git(wt, "rev-parse", "--short=7", "HEAD")
    tsv = wt / "results.tsv"
    tsv.write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                   f"{head}\t0.981234\t44.0\tkeep\tdepth 12 helps\n"
                   "abcdef1\t0.990000\t44.0\tdiscard\tan earlier try\n"
                   "bad1234\tnot-a-number\t1.0\tkeep\tbroken row\n")
    report = observe.import_results_tsv(ledger, wt)
    assert report.linked == [exp_id] and len(report.imported) == 1 and report.already == 0
    assert [s.line_no for s in report.skipped] == [4]
    exp = ledger.get(exp_id)
    assert (exp.decision, exp.description, exp.val_bpb) == ("keep", "depth 12 helps", 0.981234)
    other = ledger.get(report.imported[0])
    assert (other.backend, other.status) == ("import", "finished")
    assert (other.decision, other.commit_sha) == ("discard", "abcdef1")
    assert other.peak_vram_mb == pytest.approx(44.0 * 1024) and other.agent == "ada"

    again = observe.import_results_tsv(ledger, wt)
    assert (again.imported, again.linked, again.already) == ([], [], 2)
    assert len(ledger.experiments()) == 2
    observe.observe_run_log(ledger, wt)  # the finished run keeps the agent's decision
    assert ledger.get(exp_id).decision == "keep"


@pytest.mark.parametrize("ending, decision", [(SUMMARY, "keep"), (b"\nFAIL\n", "discard")],
                         ids=["summary", "fail"])
def test_a_verdict_imported_while_the_run_finishes_is_kept(ledger: Ledger, wt: Path, monkeypatch,
                                                             ending: bytes, decision: str) -> None:
    """results.tsv's row lands (another process) between the observer's read and its write."""
    runlog = wt / "run.log"
    runlog.write_bytes(STARTUP + steps(0, 5))
    exp_id = observe.observe_run_log(ledger, wt)
    landed = []

    def import_first(write):
        def wrapped(exp_id_, *args, **values):
            if values.get("status") == "finished" and not landed:
                landed.append(True)
                with Ledger(ledger.path) as other:
                    other.update(exp_id_, event="import", import_key="row-key", decision=decision)
            return write(exp_id_, *args, **values)
        return wrapped

    monkeypatch.setattr(ledger, "update", import_first(ledger.update))
    monkeypatch.setattr(ledger, "transition", import_first(ledger.transition))
    append(runlog, b"\n" + ending)
    observe.observe_run_log(ledger, wt)
    exp = ledger.get(exp_id)
    assert landed and (exp.status, exp.decision, exp.import_key) == ("finished", decision, "row-key")


def test_a_forks_extra_columns_are_kept_as_cockpit_import_keeps_them(ledger: Ledger, wt: Path) -> None:
    (wt / "results.tsv").write_text("commit\tval_bpb\tmemory_gb\tstatus\tcategory\thypothesis\t"
                                    "num_steps\tdescription\n"
                                    "abcdef1\t0.990000\t44.0\tdiscard\tLR\tlower is calmer\t953\tlr 0.02\n")
    [exp_id] = observe.import_results_tsv(ledger, wt).imported
    exp = ledger.get(exp_id)
    assert (exp.category, exp.hypothesis) == ("lr", "lower is calmer")
    assert (exp.num_steps, exp.description) == (953, "lr 0.02")
    assert exp.summary["hypothesis"] == "lower is calmer" and exp.peak_vram_mb == 44.0 * 1024


def test_a_row_being_written_waits_until_it_is_complete(ledger: Ledger, wt: Path) -> None:
    tsv = wt / "results.tsv"
    tsv.write_text(HEADER + "abcdef1\t0.990000\t44.0\tdiscard\tlonger wa")
    report = observe.import_results_tsv(ledger, wt)
    assert report.pending_line and report.imported == [] and not report.error
    append(tsv, b"rmup\n")
    report = observe.import_results_tsv(ledger, wt)
    assert len(report.imported) == 1 and ledger.get(report.imported[0]).description == "longer warmup"
    append(tsv, b"abcdef2\t0.980000\t44.0\tkeep\tno newline at the end")
    assert observe.import_results_tsv(ledger, wt, settle_s=0.0).imported  # settled: imported as is


def test_garbage_run_log_and_results_tsv_are_tolerated(ledger: Ledger, wt: Path) -> None:
    (wt / "run.log").write_bytes(b"\xff\xfe\x00garbage\x1b[31m\r\rstep x | loss: ??\n" + bytes(range(256)))
    exp_id = observe.observe_run_log(ledger, wt)
    assert ledger.get(exp_id).status == "running" and ledger.steps(exp_id) == []
    tsv = wt / "results.tsv"
    tsv.write_bytes(b"\x00\x01 this is not a results file\n\xff\xff\n")
    report = observe.import_results_tsv(ledger, wt)
    assert "header" in report.error and report.imported == []
    tsv.write_bytes(HEADER.encode() + b"abcdef1\t0.99\t1.0\tkeep\tcaf\xe9 \xff\n")
    report = observe.import_results_tsv(ledger, wt)
    assert len(report.imported) == 1 and "\ufffd" in ledger.get(report.imported[0]).description


def test_rewritten_run_log_starts_a_new_experiment(ledger: Ledger, wt: Path) -> None:
    runlog = wt / "run.log"
    runlog.write_bytes(STARTUP + steps(0, 50))
    first = observe.observe_run_log(ledger, wt)
    runlog.write_bytes(STARTUP + steps(0, 2))  # `> run.log` again: shorter
    second = observe.observe_run_log(ledger, wt)
    assert second != first
    old = ledger.get(first)
    assert (old.status, old.decision) == ("finished", "crash") and "rewritten" in old.reason
    assert Path(old.log_path).read_bytes() == STARTUP + steps(0, 50)  # its copy is intact
    runlog.write_bytes(STARTUP + steps(0, 80, loss=9.0))  # longer, and differs before the offset
    third = observe.observe_run_log(ledger, wt)
    assert third not in (first, second) and len(ledger.experiments()) == 3


def test_fail_is_a_crash(ledger: Ledger, wt: Path) -> None:
    (wt / "run.log").write_bytes(STARTUP + steps(0, 3) + b"\nFAIL\n")
    exp = ledger.get(observe.observe_run_log(ledger, wt))
    assert (exp.status, exp.decision) == ("finished", "crash") and "FAIL" in exp.crash_tail


def test_the_writing_process_exiting_without_summary_is_a_crash(ledger: Ledger, wt: Path) -> None:
    script = ("import sys\nf = open(sys.argv[1], 'wb')\n"
              "f.write(b'starting\\n\\rstep 00001 (1.0%) | loss: 5.0')\nf.flush()\n"
              "print('ready', flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(wt / "run.log")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        exp_id = observe.observe_run_log(ledger, wt)
        assert ledger.get(exp_id).runner_pid == proc.pid
        ledger.update(exp_id, heartbeat_at=time.time() - 60)
        assert reap_lost(ledger) == []  # its writer is alive: not lost
        assert observe.check_observed(ledger) == [] and ledger.get(exp_id).is_live
    finally:
        proc.communicate("")
    assert observe.check_observed(ledger) == [exp_id]
    exp = ledger.get(exp_id)
    assert (exp.status, exp.decision) == ("finished", "crash") and f"pid {proc.pid}" in exp.reason


def test_killing_an_observed_run_stops_its_writer_and_stays_killed(ledger: Ledger, wt: Path) -> None:
    """No runner of ours polls kill requests for a vanilla run: the kill stops the writer itself."""
    script = ("import sys, time\nf = open(sys.argv[1], 'wb')\nf.write(b'\\rstep 00001 (1.0%) | loss: 5.0')\n"
              "f.flush()\nprint('ready', flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(wt / "run.log")], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        exp_id = observe.observe_run_log(ledger, wt)
        message = actions.request_kill(ledger, exp_id, grace_s=2)
        assert f"stopped the process writing its run.log (pid {proc.pid})" in message
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    assert ledger.get(exp_id).decision == "killed"
    [kill] = ledger.events(exp_id, kind="kill")
    assert kill.detail["runner_alive"] is False
    append(wt / "run.log", b"\n" + SUMMARY)  # whatever comes later does not undo the kill
    observe.observe_run_log(ledger, wt)
    assert (ledger.get(exp_id).status, ledger.get(exp_id).decision) == ("finished", "killed")


def test_a_restarted_cockpit_resumes_without_duplicating_steps(ledger: Ledger, wt: Path) -> None:
    runlog = wt / "run.log"
    runlog.write_bytes(STARTUP + steps(0, 4))
    exp_id = observe.observe_run_log(ledger, wt)
    observe_runlog._TAILS.clear()  # the cockpit restarts
    assert observe.observe_run_log(ledger, wt) == exp_id
    append(runlog, steps(5, 8) + b"\n" + SUMMARY)
    observe_runlog._TAILS.clear()
    assert observe.observe_run_log(ledger, wt) == exp_id
    exp = ledger.get(exp_id)
    assert exp.status == "finished" and Path(exp.log_path).read_bytes() == runlog.read_bytes()
    recorded = [s.step for s in ledger.steps(exp_id)]
    assert recorded == sorted(set(recorded)) and recorded[-1] == 8
    observe_runlog._TAILS.clear()
    assert observe.observe_run_log(ledger, wt) == exp_id and len(ledger.experiments()) == 1


def test_a_run_marked_lost_comes_back_when_its_summary_appears(ledger: Ledger, wt: Path) -> None:
    runlog = wt / "run.log"
    runlog.write_bytes(STARTUP + steps(0, 4))
    exp_id = observe.observe_run_log(ledger, wt)  # no writer process found: nobody vouches for it
    assert reap_lost(ledger, stale_after_s=0.0) == [exp_id]
    append(runlog, b"\n" + SUMMARY)
    observe_runlog._TAILS.clear()
    assert observe.observe_run_log(ledger, wt) == exp_id
    exp = ledger.get(exp_id)
    assert (exp.status, exp.decision, exp.val_bpb) == ("finished", None, 0.981234)


def test_a_cockpit_run_is_not_observed_but_a_later_vanilla_run_is(tmp_path: Path) -> None:
    main = make_project(tmp_path)
    wt = agent_worktree(main, "bo")
    done = cockpit("run", "-m", "baseline", cwd=wt)
    assert done.returncode == 0, done.stderr
    with Ledger(main / ".autoresearch" / "ledger.db") as ledger:
        assert (wt / "run.log").stat().st_size > 0
        assert observe.observe_run_log(ledger, wt) is None
        live = ledger.register(worktree=str(wt), backend="local", status="running", description="live")
        append(wt / "run.log", steps(0, 3))  # growing while a cockpit run is live: the runner's
        assert observe.observe_run_log(ledger, wt) is None
        ledger.update(live, status="finished", decision="lost")
        (wt / "run.log").write_bytes(STARTUP + steps(0, 2))
        exp_id = observe.observe_run_log(ledger, wt)
        assert exp_id is not None and ledger.get(exp_id).backend == "observed"
        assert len(ledger.experiments()) == 3


def test_a_vanished_worktree_marks_the_agent_gone(ledger: Ledger, wt: Path) -> None:
    ledger.upsert_agent("ada", worktree=str(wt), state="running", tag="nov22")
    (wt / "run.log").write_bytes(STARTUP + steps(0, 3))
    exp_id = observe.observe_run_log(ledger, wt, agent="ada")
    shutil.rmtree(wt)
    assert observe.observe_run_log(ledger, wt) is None
    assert ledger.get_agent("ada").state == "gone"
    assert ledger.get(exp_id).decision == "lost"
    assert observe.import_results_tsv(ledger, wt, agent="ada").gone
    assert [e.kind for e in ledger.events(kind="agent-gone")] == ["agent-gone"]


def test_a_real_training_log_streamed_in_pieces(ledger: Ledger, wt: Path) -> None:
    source = (REAL_RUNS / "moe-run-compute90.log").read_bytes()
    runlog = wt / "run.log"
    runlog.write_bytes(b"")
    exp_id = None
    for start in range(0, len(source), 150_001):
        append(runlog, source[start:start + 150_001])
        exp_id = observe.observe_run_log(ledger, wt) or exp_id
    exp = ledger.get(exp_id)
    expected = parse_file(REAL_RUNS / "moe-run-compute90.log").summary
    assert (exp.status, exp.val_bpb, exp.num_steps) == ("finished", expected["val_bpb"], 7000)
    assert exp.summary == expected and len(ledger.experiments()) == 1


def test_a_real_log_read_at_once_keeps_its_whole_curve(ledger: Ledger, wt: Path) -> None:
    """Observed post hoc (7000 `\\r` steps in one read): the curve is every 0.1 % of progress."""
    shutil.copyfile(REAL_RUNS / "moe-run-compute90.log", wt / "run.log")
    exp = ledger.get(observe.observe_run_log(ledger, wt))
    rows = ledger.steps(exp.id)
    assert exp.status == "finished" and 900 <= len(rows) <= 1001
    assert [r.step for r in rows] == sorted({r.step for r in rows})
    assert rows[-1].step == 6999 and rows[-1].loss == pytest.approx(2.429389)
    progress = [r.progress_pct for r in rows]
    assert progress[0] < 1 and max(b - a for a, b in zip(progress, progress[1:])) <= 0.2


def test_a_real_log_cut_mid_run_stays_running(ledger: Ledger, wt: Path) -> None:
    shutil.copyfile(REAL_RUNS / "moe-run-f3.log", wt / "run.log")
    exp = ledger.get(observe.observe_run_log(ledger, wt))
    assert exp.status == "running" and exp.progress_pct is not None and ledger.steps(exp.id)


@pytest.mark.parametrize("name", ["rtx5070-results.tsv", "moe-results.tsv", "mlx-results.tsv"])
def test_real_results_tsv_files_import_once(ledger: Ledger, wt: Path, name: str) -> None:
    shutil.copyfile(REAL_RUNS / name, wt / "results.tsv")
    report = observe.import_results_tsv(ledger, wt)
    assert report.imported and not report.error
    count = len(ledger.experiments())
    assert count == len(report.imported) + len(report.linked)
    again = observe.import_results_tsv(ledger, wt)
    assert again.imported == [] and len(ledger.experiments()) == count


def test_sync_before_removal_takes_an_unterminated_last_row_as_it_is(ledger: Ledger, wt: Path) -> None:
    (wt / "results.tsv").write_text(HEADER + "abcdef1\t0.99\t1.0\tkeep\tx")
    assert observe.import_results_tsv(ledger, wt).imported == []
    report = observe.sync_worktree(ledger, wt)
    assert len(report.imported) == 1 and ledger.get(report.imported[0]).description == "x"

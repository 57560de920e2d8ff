"""Open a 1 GB training log (with `\r` progress lines) in the detail view's log tab.

Generates the log in /tmp (after checking the free space): a startup block, then physical lines
of 20,000 `\r` step segments each, interleaved with bursts of ordinary lines, then a summary.
Child processes (so each peak RSS is theirs alone) start the real app headless on a ledger holding
one crashed experiment with that log, open its detail screen straight onto the Log tab and report
the first screen (rows of the log drawn), jump to end (the summary drawn, before the index is
complete), the full index, a search for a string on the last line, and peak RSS; the same for a
101-line log (the screen's own cost), and the log viewer alone in a bare app. Times are taken when
LogView renders the row (a wrapped render_line), i.e. when the frame is composed. The log is
deleted at the end unless --keep.

Usage:
    python bench/bench_big_log.py                   # 1024 MB
    python bench/bench_big_log.py --size-mb 256 --keep
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEGMENTS_PER_LINE = 20_000  # `\r` step segments in one physical line
PLAIN_LINES = 2_000  # ordinary lines between two progress lines
NEEDLE = "needle-at-the-very-end"  # searched for: appears once, on the last line
LAST_LINE = f"router_aux_loss:  0.002516 {NEEDLE}"
SCREEN = (120, 40)  # terminal size of the headless app
TIMEOUT_S = 120.0  # give up waiting for any one stage after this long


# ---------------------------------------------------------------------------
# The log

def generate(path: Path, size: int) -> tuple[int, float]:
    """Write about `size` bytes of contract-format log; return (bytes, seconds)."""
    start = time.perf_counter()
    step = 0
    with path.open("wb", buffering=8 << 20) as out:
        out.write(b"Vocab size: 8,192\nModel config: {'n_layer': 8}\nTime budget: 300s\n")
        written = out.tell()
        while written < size:
            segments = []
            for _ in range(SEGMENTS_PER_LINE):
                step += 1
                segments.append(f"\rstep {step:08d} ({step % 1000 / 10:.1f}%) | loss: {3 + 1 / step:.6f} | "
                                f"lrm: 1.00 | dt: 312ms | tok/sec: 52,480 | mfu: 39.8% | epoch: 1 | "
                                f"remaining: {100000 - step % 100000}s    ")
            plain = [f"W0610 10:04:18.255000 rank0 warning {step}-{i}: something harmless happened\n"
                     for i in range(PLAIN_LINES)]
            chunk = ("".join(segments) + "\n" + "".join(plain)).encode()
            out.write(chunk)
            written += len(chunk)
        out.write(f"---\nval_bpb:          0.936404\nnum_steps:        {step}\n{LAST_LINE}\n".encode())
        written = out.tell()
    return written, time.perf_counter() - start


# ---------------------------------------------------------------------------
# The child: the real app, headless

class PaintSpy:
    """Records when LogView first renders a row whose text satisfies a predicate (the moment a
    frame with it is composed), and when it was mounted, by wrapping two of its methods."""

    def __init__(self) -> None:
        from app.tui.widgets.log_viewer import LogView

        self.waiting: dict[str, object] = {}
        self.seen: dict[str, float] = {}
        self.mounted_at = 0.0
        original = LogView.render_line
        original_mount = LogView.on_mount
        spy = self

        def on_mount(view):  # type: ignore[no-untyped-def]
            spy.mounted_at = time.perf_counter()
            return original_mount(view)

        LogView.on_mount = on_mount  # type: ignore[method-assign]

        def render_line(view, y):  # type: ignore[no-untyped-def]
            strip = original(view, y)
            for name, wanted in list(spy.waiting.items()):
                if wanted(view, y, strip.text):  # type: ignore[operator]
                    spy.seen[name] = time.perf_counter()
                    del spy.waiting[name]
            return strip

        LogView.render_line = render_line  # type: ignore[method-assign]

    def expect(self, name: str, wanted) -> None:  # type: ignore[no-untyped-def]
        self.waiting[name] = wanted


async def wait_seen(pilot, spy: PaintSpy, name: str) -> float:  # type: ignore[no-untyped-def]
    deadline = time.perf_counter() + TIMEOUT_S
    while name not in spy.seen:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{name} did not show in time")
        await pilot.pause(0.005)
    return spy.seen[name]


def first_row(view, y: int, text: str) -> bool:  # type: ignore[no-untyped-def]
    """A full screen of log rows: the last row on screen is drawn with text."""
    return bool(y == view.page_height - 1 and text.strip())


async def detail(log: Path, workdir: Path) -> dict[str, float]:
    """The real app: detail screen opened straight onto the Log tab, then end, then search."""
    from app.ledger.store import Ledger
    from app.tui.app import make_app
    from app.tui.screens.detail import DetailScreen
    from app.tui.widgets.log_viewer import LogView

    spy = PaintSpy()
    ledger_path = workdir / "ledger.db"
    with Ledger(ledger_path) as ledger:
        exp_id = ledger.register(agent="bench", description="big log", log_path=str(log),
                                 status="finished", decision="crash")
    figures: dict[str, float] = {}
    app = make_app(ledger_path, read_only=True)
    async with app.run_test(size=SCREEN) as pilot:
        spy.expect("first", first_row)
        start = time.perf_counter()
        screen = DetailScreen(ledger_path, exp_id, True)
        await app.push_screen(screen)
        await pilot.press("l")
        figures["first_screen_s"] = await wait_seen(pilot, spy, "first") - start
        view = screen.query_one(LogView)
        figures["indexed_at_first_screen_pct"] = 100 * view.index.scanned / view.index.size
        spy.expect("end", lambda view, y, text: LAST_LINE in text)
        start = time.perf_counter()
        await pilot.press("end")
        figures["jump_to_end_s"] = await wait_seen(pilot, spy, "end") - start
        figures["indexed_at_end_screen_pct"] = 100 * view.index.scanned / view.index.size
        deadline = time.perf_counter() + TIMEOUT_S
        while not view.index.complete and time.perf_counter() < deadline:
            await pilot.pause(0.01)
        figures["full_index_s"] = time.perf_counter() - start
        figures["lines"] = view.line_count
        spy.expect("match", lambda view, y, text: view.match_line is not None and NEEDLE in text)
        start = time.perf_counter()
        await pilot.press("slash", *NEEDLE, "enter")
        figures["search_to_end_s"] = await wait_seen(pilot, spy, "match") - start
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


async def viewer(log: Path) -> dict[str, float]:
    """The log viewer alone in a bare app: its own mount-to-first-screen time."""
    from textual.app import App, ComposeResult

    from app.tui.widgets.log_viewer import LogViewer

    class Bare(App[None]):
        CSS_PATH = [REPO / "styles" / "detail.tcss"]

        def compose(self) -> ComposeResult:
            yield LogViewer(log)

    spy = PaintSpy()
    spy.expect("first", first_row)
    async with Bare().run_test(size=SCREEN) as pilot:
        first = await wait_seen(pilot, spy, "first")
    return {"viewer_first_screen_s": first - spy.mounted_at}


def child(mode: str, log: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-big-log-") as workdir:
        if mode == "viewer":
            figures = asyncio.run(viewer(Path(log)))
        else:
            figures = asyncio.run(detail(Path(log), Path(workdir)))
    print(json.dumps(figures))


def run_child(mode: str, log: Path) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(log)], capture_output=True,
                          text=True, cwd=REPO, timeout=10 * TIMEOUT_S)
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="log size to generate")
    parser.add_argument("--dir", default="/tmp", help="where to write the log")
    parser.add_argument("--keep", action="store_true", help="keep the generated log")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    size = args.size_mb * 1024 * 1024
    free = shutil.disk_usage(args.dir).free
    if free < 2 * size:
        raise SystemExit(f"{args.dir} has {free / 2**30:.1f} GiB free; need {2 * size / 2**30:.1f} GiB")
    log = Path(args.dir) / f"bench-big-log-{os.getpid()}.log"
    small = Path(args.dir) / f"bench-small-log-{os.getpid()}.log"
    try:
        written, seconds = generate(log, size)
        small.write_text("Vocab size: 8,192\n" * 100 + LAST_LINE + "\n")
        print(f"generated {written / 2**20:,.0f} MB in {seconds:.1f}s: {log}")
        base = run_child("detail", small)
        figures = run_child("detail", log)
        figures.update(run_child("viewer", log))
    finally:
        small.unlink(missing_ok=True)
        if not args.keep:
            log.unlink(missing_ok=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; log in the page cache "
          "(just written)")
    print(f"logical lines:            {figures['lines']:,.0f}")
    print(f"first screen:             {figures['first_screen_s'] * 1000:7.0f} ms   (target <= 1000 ms; "
          f"from opening the detail screen on the Log tab; {figures['indexed_at_first_screen_pct']:.1f}% "
          "indexed then)")
    print(f"  same, on a 101-line log:{base['first_screen_s'] * 1000:7.0f} ms   "
          "(the detail screen's own cost)")
    print(f"  log viewer alone:       {figures['viewer_first_screen_s'] * 1000:7.0f} ms   (bare app: the "
          "viewer's mount to a full screen of rows)")
    print(f"jump to end (summary):    {figures['jump_to_end_s'] * 1000:7.0f} ms   "
          f"({figures['indexed_at_end_screen_pct']:.0f}% indexed then)")
    print(f"full index done:          {figures['full_index_s'] * 1000:7.0f} ms   (after the end key)")
    print(f"search to the last line:  {figures['search_to_end_s'] * 1000:7.0f} ms")
    print(f"peak RSS:                 {figures['peak_rss_mb']:7.1f} MB   (target <= 150 MB; the same "
          f"app on a 101-line log: {base['peak_rss_mb']:.1f} MB)")


if __name__ == "__main__":
    main()

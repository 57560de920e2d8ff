"""Human actions as short async flows: ask in a modal, write through app.actions / app.adopt in a
thread (never on the UI thread), report the outcome with an `ActionFinished` message.

Start one with `start(app, "kill", 12)`; it runs as an async worker so it can wait on modals.
Read-only apps refuse every flow that writes, whatever asked for it (key, palette, test).
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from app.errors import CockpitError
from app.tui.agent_flows import AGENT_WRITE_ACTIONS
from app.tui.messages import ActionFinished
from app.tui.screens.adopt import AdoptChoiceModal
from app.tui.screens.confirm import ConfirmModal
from app.tui.screens.note import NoteModal

if TYPE_CHECKING:
    from app.ledger.store import Ledger
    from app.tui.app import CockpitApp

WRITE_ACTIONS = frozenset({"kill", "approve", "reject", "adopt", "note"}) | AGENT_WRITE_ACTIONS
UNDO_S = 5.0  # an approval is written this long after it is confirmed; `u` meanwhile undoes it


def _core() -> SimpleNamespace:
    """app.actions, app.ledger.store, app.adopt: imported on first use, not before the first paint
    (app.ledger.store pulls in sqlite_utils and numpy, the slowest imports of the cockpit)."""
    from app import actions, adopt
    from app.ledger import store as ledger

    return SimpleNamespace(actions=actions, ledger=ledger, adopt=adopt)


def _failures() -> tuple[type[BaseException], ...]:
    core = _core()
    return CockpitError, *core.ledger.LEDGER_ERRORS, OSError


async def _write(app: CockpitApp, action: str, exp_id: int | None,
                 write: Callable[[Ledger], Any]) -> Any:
    """Run `write` on a fresh ledger connection in a thread; post the outcome or the error."""
    def in_thread() -> Any:
        with _core().ledger.Ledger(app.ledger_path, create=False) as ledger:
            return write(ledger)

    try:
        result = await asyncio.to_thread(in_thread)
    except _failures() as exc:
        app.post_message(ActionFinished(action, exp_id, error=str(exc)))
        return None
    return result


def _finished(app: CockpitApp, action: str, exp_id: int | None, outcome: Any) -> None:
    if outcome is not None:
        app.post_message(ActionFinished(action, exp_id, outcome=str(outcome)))


async def kill(app: CockpitApp, exp_id: int) -> None:
    if await app.push_screen_wait(ConfirmModal(f"Kill experiment #{exp_id}?",
                                               app.experiment_summary(exp_id), confirm_label="Kill")):
        _finished(app, "kill", exp_id, await _write(
            app, "kill", exp_id, lambda ledger: _core().actions.request_kill(ledger, exp_id)))


async def approve(app: CockpitApp, exp_id: int) -> None:
    """Confirm, then wait UNDO_S for `u` before writing: once written, the agent acts on it."""
    question = f"Approve #{exp_id}? It becomes a keep and its agent builds on it."
    if not await app.push_screen_wait(ConfirmModal(question, app.experiment_summary(exp_id),
                                                   confirm_label="Approve", danger=False)):
        return
    if await _undone(app, f"approve #{exp_id}"):
        _finished(app, "approve", exp_id, f"approval of #{exp_id} undone: it is still pending")
        return
    _finished(app, "approve", exp_id,
              await _write(app, "approve", exp_id, lambda ledger: _core().actions.approve(ledger, exp_id)))


async def _undone(app: CockpitApp, what: str) -> bool:
    """Offer `u` for UNDO_S seconds; True when it was pressed."""
    undo = asyncio.Event()
    app.pending_undo = (what, undo)
    app.refresh_bindings()
    app.notify(f"{what} in {UNDO_S:.0f} s: press u to undo", timeout=UNDO_S)
    try:
        await asyncio.wait_for(undo.wait(), UNDO_S)
    except asyncio.TimeoutError:
        pass
    finally:
        app.pending_undo = None
        app.refresh_bindings()
    return undo.is_set()


async def reject(app: CockpitApp, exp_id: int) -> None:
    question = f"Reject #{exp_id}? It becomes a discard and its agent resets the commit."
    if await app.push_screen_wait(ConfirmModal(question, app.experiment_summary(exp_id),
                                               confirm_label="Reject")):
        _finished(app, "reject", exp_id,
                  await _write(app, "reject", exp_id, lambda ledger: _core().actions.reject(ledger, exp_id)))


async def note(app: CockpitApp, exp_id: int | None) -> None:
    about = f"Note on #{exp_id}: {app.experiment_summary(exp_id)}" if exp_id else "General note"
    text = await app.push_screen_wait(NoteModal(about))
    if text:
        note_id = await _write(app, "note", exp_id,
                               lambda ledger: _core().actions.add_note(ledger, text, exp_id))
        where = f" on #{exp_id}" if exp_id else ""
        _finished(app, "note", exp_id, None if note_id is None else f"note {note_id} saved{where}")


async def adopt(app: CockpitApp, exp_id: int) -> None:
    """Check main first (git), then confirm, or offer exact / merge / cancel when main moved."""
    adopt_module = _core().adopt
    offer = await _write(app, "adopt", exp_id, lambda ledger: adopt_module.adopt_check(ledger, exp_id))
    if offer is None:
        return
    if offer.main_moved:
        mode = await app.push_screen_wait(AdoptChoiceModal(offer.describe()))
    else:
        confirmed = await app.push_screen_wait(ConfirmModal(offer.describe(), confirm_label="Adopt",
                                                            danger=False))
        mode = "exact" if confirmed else None
    if mode:
        _finished(app, "adopt", exp_id, await _write(
            app, "adopt", exp_id, lambda ledger: adopt_module.adopt_experiment(ledger, exp_id, mode)))


FLOWS: dict[str, Callable[[CockpitApp, Any], Awaitable[None]]] = {
    "kill": kill, "approve": approve, "reject": reject, "note": note, "adopt": adopt,
}


def start(app: CockpitApp, action: str, exp_id: int | None) -> None:
    """Run the flow for `action` on `exp_id` as an async worker (refused when read-only)."""
    if app.read_only and action in WRITE_ACTIONS:
        app.notify(f"read-only cockpit: {action} is not available", severity="error")
        return
    app.run_worker(FLOWS[action](app, exp_id), name=f"{action} #{exp_id}", group="actions",
                   exit_on_error=False)

"""sanitize(): nothing from an agent or a log may drive the terminal; markup stays literal."""

from __future__ import annotations

import pytest

from app.logs.textsafe import sanitize


def test_rich_markup_is_left_as_literal_characters() -> None:
    assert sanitize("[red]x[/red]") == "[red]x[/red]"
    assert sanitize("[bold link=http://x]y[/]") == "[bold link=http://x]y[/]"


def test_plain_text_unicode_and_tabs_pass_unchanged() -> None:
    text = "val_bpb → 0.9979 ✓ naïve 日本語\tcol2\nline 2"
    assert sanitize(text) == text


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("\x1b[31mred\x1b[0m", "red"),  # CSI SGR
        ("\x1b[2J\x1b[Hhome", "home"),  # clear screen, cursor home
        ("\x1b[?1049h\x1b[?25lalt", "alt"),  # private-mode CSI
        ("\x9b31mred", "red"),  # 8-bit CSI
        ("\x1b]0;title\x07after", "after"),  # OSC title, BEL-terminated
        ("\x1b]0;title\x1b\\after", "after"),  # OSC title, ST-terminated
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink
        ("\x9d8;;http://x\x9clink", "link"),  # 8-bit OSC and ST
        ("\x1bP1$r0m\x1b\\dcs", "dcs"),  # DCS
        ("\x1b_apc payload\x1b\\x", "x"),  # APC
        ("\x1b]52;c;ZXZpbA==", ""),  # unterminated OSC 52 (clipboard write) swallows the rest
        ("\x1b7\x1b(B\x1bcsaved", "saved"),  # short escapes: save cursor, charset, reset
        ("a\x00b\x07c\x08d\x7fe\x85f\x8eg", "abcdefg"),  # C0, DEL, C1 (NEL, SS2)
        ("a\rb", "ab"),  # carriage return cannot overwrite what was shown
        ("abc\u202edcba", "abcdcba"),  # bidi override
        ("\x1b[31", ""),  # escape cut off at the end
        ("\x1b", ""),
    ],
)
def test_escapes_and_controls_do_not_survive(dirty: str, clean: str) -> None:
    assert sanitize(dirty) == clean


def test_required_sequences_are_all_removed_together() -> None:
    dirty = "[red]x[/red]\x1b[31m \x1b]0;title\x07 \x1b]8;;http://x\x1b\\ \x9b31m \x00 \x7f"
    out = sanitize(dirty)
    assert out.startswith("[red]x[/red]")
    for char in "\x1b\x07\x9b\x00\x7f\x9c":
        assert char not in out
    assert "title" not in out and "http" not in out


def test_no_control_character_survives_any_input() -> None:
    every_char = "".join(chr(code) for code in range(0x200)) + "\u202a\u202b\u202c\u202d\u202e\u2066\u2069"
    out = sanitize(every_char * 3)
    controls = {chr(c) for c in range(0x20) if chr(c) not in "\t\n"} | {chr(c) for c in range(0x7F, 0xA0)}
    assert not controls & set(out)
    assert not set("\u202a\u202b\u202c\u202d\u202e\u2066\u2069") & set(out)

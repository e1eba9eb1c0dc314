"""Outside text made safe to print and store: no terminal control sequences, bounded."""

import pytest

from pachhook.core.sanitize import bound, clean, one_line, strip_controls


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b]0;new title\x07text", "text"),  # OSC: set the terminal's title
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink
        ("a\x1b[2K\rb", "a\nb"),  # erase line + carriage return cannot hide "a"
        ("bell\x07 and nul\x00", "bell and nul"),
        ("\x9b31mC1 CSI", "C1 CSI"),
        ("tab\tkept\nnewline kept", "tab\tkept\nnewline kept"),
    ],
)
def test_control_sequences_are_removed(raw, expected):
    assert strip_controls(raw) == expected


def test_one_line_and_clean_are_bounded():
    assert one_line("a\n  b\x1b[1m c", 100) == "a b c"
    long = "x" * 5000
    assert len(one_line(long, 300)) == 300 and one_line(long, 300).endswith(" …")
    assert len(clean(long)) == 2000
    assert bound("short", 10) == "short"
    assert clean("  line\twith tab  ") == "  line with tab"

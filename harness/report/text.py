"""Text clean-up shared by the writers: evidence comes from serial consoles and subprocesses, not from people.

Console output carries ANSI colour codes, NULs and stray carriage returns, and output decoded with
``surrogateescape`` carries lone surrogates. XML 1.0 cannot hold most control characters at all and UTF-8
cannot hold lone surrogates, so a single bad byte would otherwise make junit.xml unparsable or crash a write.
"""

from __future__ import annotations

import re

ANSI_CSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Characters XML 1.0 forbids (everything below 0x20 except tab/LF/CR, the surrogates, U+FFFE/U+FFFF).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")

#: Evidence longer than this is cut (head dropped) in the human-facing writers; results.json keeps it whole.
MAX_DISPLAY_CHARS = 64_000


def clean_text(text: str) -> str:
    """Make ``text`` encodable as UTF-8: lone surrogates become a visible ``\\udcxx`` escape."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def display_text(text: str, limit: int = MAX_DISPLAY_CHARS) -> str:
    """Text fit for XML and HTML: ANSI codes removed, line ends normalised, forbidden characters escaped.

    Over ``limit`` characters only the tail is kept, because the end of a console log is where the failure is.
    """
    text = ANSI_CSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _XML_INVALID.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )
    if len(text) > limit:
        cut = len(text) - limit
        text = (
            f"[... {cut} characters cut here; the full text is in results.json and the log ...]\n"
            + text[cut:]
        )
    return text


def first_line(text: str, limit: int = 300) -> str:
    """A one-line summary of ``text`` for attributes and titles."""
    line = display_text(text).strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"

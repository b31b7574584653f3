"""The error every upload check raises, and the one way text from a file is quoted in a message.

Kept apart from the readers so that :mod:`battgai.uploads.cifscan` (which the readers call) can
raise the same error without importing them.
"""

from __future__ import annotations


class UploadError(ValueError):
    """An upload that cannot be used; the message says why, for the researcher."""


def quoted(text: object, limit: int = 40) -> str:
    """Text from a file, made safe to quote in a message: one line, at most ``limit`` characters, in backticks.

    Pages show messages as Markdown: inside a code span nothing becomes a link,
    emphasis, formula or HTML, so a crafted column name or CIF value is shown as
    typed. Backticks and unprintable characters (which could end the span or
    break the line) become ``?``.
    """
    s = "".join(ch if ch.isprintable() and ch != "`" else "?" for ch in str(text))
    if not s.strip():
        return "an empty value"
    return f"`{s[:limit - 3]}...`" if len(s) > limit else f"`{s}`"

"""The one error type the CLI knows how to print: a message saying what is wrong and what to do."""


class OpenparityError(Exception):
    """An expected failure with a one-line, actionable message (no traceback for the user)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)

    def one_line(self) -> str:
        """The message and the hint joined into a single line for terminal output."""
        text = f"{self.message}: {self.hint}" if self.hint else self.message
        return " ".join(text.split())

"""The one exception type raised for submissions that sbatch would reject."""

from __future__ import annotations


class SbatchError(ValueError):
    """A submission (or one value in it) that Slurm 22.05's sbatch would reject.

    The message is a single line that names the offending input (option, environment variable or
    script line) and says how to fix it.
    """

    def __init__(self, message: str) -> None:
        one_line = message.replace("\r", " ").replace("\n", " ")
        super().__init__(one_line)
        self.message = one_line

    def __str__(self) -> str:
        return self.message

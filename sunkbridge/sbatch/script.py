"""Batch scripts: the checks sbatch makes on a script and the ``#SBATCH`` directives it reads.

Script checks (in sbatch's order): not empty, not only whitespace, first line starts with ``#!``, no
NUL byte, no DOS line break (``\\r\\n``). ``--wrap`` scripts are built by :func:`wrap_script`.

Directives (Slurm 22.05 ``_opt_batch_script``):

* a line is a directive when it starts in column 1 with ``#SBATCH`` (case-sensitive; ``#SLURM`` is
  still read, with a warning); the text right after the magic word is split into words, so
  ``#SBATCH--nodes=2`` works;
* reading stops at the first line whose first non-blank character is not ``#``; blank lines and
  other comments do not stop it;
* words are separated by blanks; single or double quotes group (and are removed); a backslash makes
  the next character literal (except a blank, which still ends the word); an unescaped ``#`` starts a
  comment (``--job-name=a#b`` is ``a``); a word with no characters (``''``) ends the line too; an
  unmatched quote and a word starting with ``:`` are fatal;
* the words of all directive lines form one argument vector, read like a command line; a word that
  is not an option is an error ("Invalid directive"). ``hetjob``/``packjob`` separators start a
  heterogeneous job, which sunkbridge does not support.

``#PBS`` and ``#BSUB`` lines are translated by sbatch 22.05 into options unless ``--ignore-pbs`` or
``SBATCH_IGNORE_PBS`` is given; sunkbridge does not translate them and refuses such scripts instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from sunkbridge.sbatch.errors import SbatchError

_C_SPACE = " \t\n\v\f\r"

WRAP_HEADER = "#!/bin/sh\n# This script was created by sbatch --wrap.\n\n"


def wrap_script(command: str) -> str:
    """The script sbatch builds for ``--wrap=COMMAND``."""
    return WRAP_HEADER + command + "\n"


def check_script(data: bytes, name: str) -> str:
    """Apply sbatch's script checks and return the script as text (undecodable bytes are escaped)."""
    if len(data) == 0:
        raise SbatchError(f"{name}: batch script is empty; give a script that starts with #!/bin/sh")
    if all(chr(b) in _C_SPACE for b in data.split(b"\0", 1)[0]):
        raise SbatchError(f"{name}: batch script contains only whitespace; give a script that starts with #!")
    if not data.startswith(b"#!"):
        raise SbatchError(
            f"{name}: this does not look like a batch script; the first line must start with #! "
            "followed by the path to an interpreter, e.g. #!/bin/bash"
        )
    if b"\0" in data:
        raise SbatchError(
            f"{name}: batch script contains a NUL byte (binary file?); Slurm refuses such scripts"
        )
    if b"\r\n" in data:
        raise SbatchError(
            f"{name}: batch script contains DOS line breaks (\\r\\n); convert it with dos2unix or "
            "sed -i 's/\\r$//'"
        )
    return data.decode("utf-8", errors="surrogateescape")


@dataclass(frozen=True)
class DirectiveWord:
    """One word read from an ``#SBATCH`` line, with its 1-based line number."""

    text: str
    line: int


@dataclass(frozen=True)
class Directives:
    """The words of all ``#SBATCH`` lines, and warnings (``#SLURM`` lines)."""

    words: tuple[DirectiveWord, ...]
    warnings: tuple[str, ...] = ()


def _words(rest: str, name: str, lineno: int, raw_line: str) -> list[str]:
    """Split the text after the magic word into words, with sbatch's quoting rules."""
    out: list[str] = []
    i = 0
    n = len(rest)
    while True:
        while i < n and rest[i] in _C_SPACE:
            i += 1
        if i >= n:
            return out
        if rest[i] == ":":
            raise SbatchError(
                f"{name} line {lineno}: unexpected ':' in {raw_line!r}; heterogeneous job separators are "
                "not supported, remove the ':'"
            )
        word: list[str] = []
        quote = ""
        escaped = False
        while i < n and (quote or rest[i] not in _C_SPACE):
            ch = rest[i]
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
                i += 1
                continue
            elif quote:
                if ch == quote:
                    quote = ""
                    i += 1
                    continue
            elif ch in "\"'":
                quote = ch
                i += 1
                continue
            elif ch == "#":
                break
            word.append(ch)
            i += 1
        if quote:
            raise SbatchError(f"{name} line {lineno}: unmatched {quote} in {raw_line!r}; close the quote")
        if not word:
            # sbatch stops reading the line at a word with no characters ("" or a comment)
            return out
        out.append("".join(word))


def read_directives(text: str, name: str) -> Directives:
    """Collect the words of the script's ``#SBATCH`` (and ``#SLURM``) lines, as sbatch 22.05 does."""
    words: list[DirectiveWord] = []
    warnings: list[str] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.startswith("#SBATCH"):
            rest = line[len("#SBATCH") :]
        elif line.startswith("#SLURM"):
            rest = line[len("#SLURM") :]
            if not warnings:
                warnings.append(
                    f"{name} line {lineno}: #SLURM directives are deprecated; change them to #SBATCH"
                )
        else:
            stripped = line.lstrip(_C_SPACE)
            if stripped and not stripped.startswith("#"):
                break
            continue
        for word in _words(rest, name, lineno, line):
            if word.lower() in ("hetjob", "packjob"):
                raise SbatchError(
                    f"{name} line {lineno}: heterogeneous jobs ('#SBATCH {word}') are not supported by "
                    "sunkbridge; submit the components as separate jobs"
                )
            words.append(DirectiveWord(word, lineno))
    return Directives(tuple(words), tuple(warnings))


def find_wrapper_directive(text: str) -> tuple[int, str] | None:
    """The first ``#PBS``/``#BSUB`` line sbatch would translate, as (line number, magic word)."""
    non_comments = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        for magic in ("#PBS", "#BSUB"):
            if line.startswith(magic):
                return lineno, magic
        if not line.startswith("#"):
            non_comments += 1
            if non_comments > 100:
                return None
    return None

"""Reading a failed classic-builder build: the step, the reason and the fix."""

from __future__ import annotations

from sunkbridge.images.build import diagnose_build_output

ESC = "\x1b"
# A failing apt step as dockerd streams it: stderr is wrapped in colour codes that can split a line anywhere.
SPLIT_APT_ERROR = (
    "Step 1/4 : FROM local/debian:bookworm\n"
    " ---> 059e197c87d3\n"
    "Step 3/4 : RUN apt-get update -qq && apt-get install -y sunk-no-such-package\n"
    " ---> Running in 26efa1ab9855\n"
    "Reading package lists...\n"
    f"{ESC}[91mE{ESC}[0m{ESC}[91m: Unable to locate package sunk-no-such-package{ESC}[0m{ESC}[91m\n"
    f"{ESC}[0mRemoving intermediate container 26efa1ab9855\n"
    "The command '/bin/sh -c apt-get update -qq && apt-get install -y sunk-no-such-package' "
    "returned a non-zero code: 100\n"
)


def test_apt_error_split_by_colour_codes_is_recognised() -> None:
    failure = diagnose_build_output(SPLIT_APT_ERROR, dockerfile="/ctx/Dockerfile", appended_steps=1)
    assert failure.step.startswith("step 3/3 `RUN apt-get update")
    assert failure.reason == "Debian bookworm has no package `sunk-no-such-package`"
    assert "apt-cache search sunk-no-such-package" in failure.fix and "/ctx/Dockerfile" in failure.fix


def test_failed_command_detail_has_no_colour_codes() -> None:
    output = ("Step 2/3 : RUN echo about to fail >&2 && exit 3\n"
              f"{ESC}[91mabout to fail\n{ESC}[0m"
              "The command '/bin/sh -c echo about to fail >&2 && exit 3' returned a non-zero code: 3\n")
    failure = diagnose_build_output(output, dockerfile="/ctx/Dockerfile", appended_steps=1)
    assert failure.reason == "the RUN command exited 3 (about to fail)"
    assert ESC not in failure.step + failure.reason + failure.fix

"""The one exception type for bad user input.

Every check at a public boundary raises :class:`InputError` with a message that names the input and says what is
wrong with it. The CLI turns it into one line on stderr and exit code 2; the Slicer module shows it in a dialog.
"""


class InputError(ValueError):
    """A user-supplied input (file, array, parameter) is unusable; the message says which and why."""


class Cancelled(Exception):
    """Raised by a progress callback to stop a long computation; nothing is written after it."""


def run_script(main) -> None:
    """Exit with ``main()``'s code; an :class:`InputError` becomes one line on stderr and exit code 2, as in the CLI.

    For the scripts in ``Scripts/`` (``if __name__ == "__main__": run_script(main)``). SIGTERM ends the script as
    Ctrl-C does (KeyboardInterrupt), so its ``finally`` blocks and process pools clean up.
    """
    import signal
    import sys

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        sys.exit(main())
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

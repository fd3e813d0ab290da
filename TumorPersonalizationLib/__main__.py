import signal
import sys

from .cli import main


def _interrupt(signum, frame):
    # Cancel in the Slicer module terminates this process: end like Ctrl-C (temporary files removed, exit 130).
    raise KeyboardInterrupt


# The guard matters: worker processes started with "spawn" import this module again as __mp_main__.
if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())

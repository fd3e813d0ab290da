from .cli import main
from .errors import run_script

# The guard matters: worker processes started with "spawn" import this module again as __mp_main__. run_script ends
# on SIGTERM as on Ctrl-C (Cancel in the Slicer module terminates this process: temporary files removed, exit 130).
if __name__ == "__main__":
    run_script(main)

"""`python -m boinc_ext.assimilator`: the assimilator daemon with BOINC's flags."""
import sys

from ..daemon import main_for
from .daemon import Assimilator

if __name__ == "__main__":
    sys.exit(main_for(Assimilator))

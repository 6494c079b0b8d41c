"""`python -m wrapper [--seed N] [--rng-kind K]`: run a task from the source tree."""
import sys

from .main import main

sys.exit(main())

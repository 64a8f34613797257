"""``python -m robustmer``: the same command line as the ``robustmer`` script."""

from robustmer.cli import main

main()

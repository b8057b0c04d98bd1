"""``python -m tpro ...``: the same command line as the ``tpro`` script (for environments without the script)."""

from tpro.cli import main

main()

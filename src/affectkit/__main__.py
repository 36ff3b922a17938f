"""``python -m affectkit``: the same command line as ``affectkit`` (``python -m affectkit.cli`` too)."""

from affectkit.cli import main

main()

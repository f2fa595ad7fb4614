"""`python -m tt_tui.cli`: the `tt-tui` command (torchrun starts its ranks this way)."""

from tt_tui.cli import main

main()

"""The `tt-tui` commands, one module per group; tt_tui/cli.py puts them on the Typer app."""

"""One module per dashboard panel."""

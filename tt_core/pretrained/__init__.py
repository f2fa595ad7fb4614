"""Published models: the pinned catalog and its downloads, and the importer of FTT-format checkpoints."""

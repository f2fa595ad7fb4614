"""The jobs the commands run (train, eval, record, show, bench) and the thread that runs one for the app."""

"""The `tallybook` command line: a thin typer layer over the Python API. May import every part."""

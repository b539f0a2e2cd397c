"""The command-line layer: Typer commands over the core library.  Only this package prints."""

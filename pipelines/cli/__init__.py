"""The `shg` command line: parse, call, print. No logic lives here."""

"""The `shg` subcommands, one module per stage family.

Each module exposes `register(app)`, which adds its commands to the typer app. Heavy imports
(torch, ray, mlflow) happen inside the command bodies so that `shg --help` stays fast.
"""

"""`python -m ops` runs the `stoflow` command line."""

from ops.runtime.cli import app

app(prog_name="stoflow")

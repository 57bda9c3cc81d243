"""``python -m medad`` is the ``medad`` command."""

from medad.cli import app

app(prog_name="medad")

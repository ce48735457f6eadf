"""``python -m ntbench.cli``."""
from ntbench.cli import app

app()

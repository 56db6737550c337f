"""``python -m emp_queue`` is ``emp``: the machine agent launches workers this way, with the
same interpreter as itself, whether or not the ``emp`` script is on ``PATH``."""

from emp_queue.cli.main import run

run()

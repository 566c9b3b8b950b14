"""How the services tell the user what they do: one line on stderr, flushed at once, so an
overnight log shows why a run took long while it happens."""
from __future__ import annotations

import sys
from typing import Callable

Say = Callable[[str], None]


def say_on_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

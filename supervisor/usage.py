"""theater-server's argument parser: a usage error is one line, as every other bad option is
(argparse's own prints the whole usage before it, eight lines for a mistyped option)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)

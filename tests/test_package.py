"""Importing the package changes nothing outside it."""

from __future__ import annotations

import subprocess
import sys


def test_import_installs_no_exception_hook():
    code = "import rd_components, sys; assert sys.excepthook is sys.__excepthook__, sys.excepthook"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_install_one_line_errors_prints_a_user_error_as_one_line():
    code = ("import rd_components\n"
            "rd_components.errors.install_one_line_errors()\n"
            "from rd_components.errors import DataConfigError\n"
            "try:\n    raise DataConfigError('folder /x/y holds no image')\n"
            "except DataConfigError as error:\n    raise RuntimeError('Failed to evaluate ConfigExpression') from error\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: folder /x/y holds no image"

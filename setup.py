"""The one build step pyproject.toml cannot declare: ship ``include/sql`` inside the package.

The SQL lives at the repository root (``include/sql``, next to ``plugins/``), where a checkout and a
deployment's mounted folders find it; an installed wheel carries a copy as ``messagecenter/sql``
(``messagecenter.db.queries.sql_dir`` looks there first). Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SQL = Path(__file__).resolve().parent / "include" / "sql"


class BuildPyWithSql(build_py):
    """``build_py`` that also copies the SQL files into the built package."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install reads the repository's include/sql
            target = Path(self.build_lib) / "messagecenter" / "sql"
            shutil.copytree(SQL, target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithSql})

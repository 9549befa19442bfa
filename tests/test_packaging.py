"""What the Dockerfile's build stage installs (`pip install .`) carries everything the image
runs: the migrations with their template, and the app's package data. No Docker engine runs
here, so the image's build step is checked through the wheel it installs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_migrations_and_the_cli(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("botlyne-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "migrations/env.py" in names
    assert "migrations/script.py.mako" in names
    versions = {name for name in names if name.startswith("migrations/versions/0")}
    on_disk = {
        f"migrations/versions/{p.name}" for p in (ROOT / "migrations/versions").glob("0*.py")
    }
    assert versions == on_disk
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "botlyne = app.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_image_runs_as_non_root_and_serves() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile
    assert 'CMD ["botlyne", "serve", "--host", "0.0.0.0", "--port", "8000"]' in dockerfile
    assert dockerfile.count("FROM ") == 2  # a build stage and a slim runtime stage

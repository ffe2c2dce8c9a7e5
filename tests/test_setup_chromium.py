"""`make test` sets up what the suite needs on a fresh machine: Chromium for the browser test is
installed with apt where set-up runs as root, and otherwise named in one line (scripts/chromium.sh,
run by `setup.sh test`). The machine is faked: a PATH holding only stubs of id, apt-get, chromium."""

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "chromium.sh"
HINT = "install your distribution's chromium package"


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def run(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(SCRIPT)], env={"PATH": str(folder)}, capture_output=True, text=True)


@pytest.mark.parametrize("uid", ["0", "1000"])
def test_a_machine_with_chromium_is_left_alone(tmp_path, uid):
    stub(tmp_path, "id", f"echo {uid}")
    stub(tmp_path, "chromium-browser", "exit 0")
    stub(tmp_path, "apt-get", f"echo called >> {tmp_path}/apt.log")
    result = run(tmp_path)
    assert result.returncode == 0 and not (tmp_path / "apt.log").exists()


def test_as_root_apt_installs_it(tmp_path):
    stub(tmp_path, "id", "echo 0")
    stub(
        tmp_path,
        "apt-get",
        f'echo "$@" >> {tmp_path}/apt.log\n'
        f'case "$*" in *install*) printf "#!/bin/sh\\n" > {tmp_path}/chromium; '
        f"/bin/chmod +x {tmp_path}/chromium;; esac",
    )
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "apt.log").read_text().splitlines() == ["update -qq", "install -y -qq chromium"]


@pytest.mark.parametrize("case", ["not root", "root, apt fails", "root, no apt"])
def test_otherwise_one_line_says_what_to_install(tmp_path, case):
    stub(tmp_path, "id", "echo 1000" if case == "not root" else "echo 0")
    if case != "root, no apt":
        stub(tmp_path, "apt-get", "exit 100")
    result = run(tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and HINT in lines[0] and "make test" in lines[0], result.stderr

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


@pytest.mark.parametrize("case", ["not root", "root, apt fails", "root, apt installs no browser", "root, no apt"])
def test_otherwise_one_line_says_what_to_install(tmp_path, case):
    stub(tmp_path, "id", "echo 1000" if case == "not root" else "echo 0")
    if case != "root, no apt":
        status = 0 if case == "root, apt installs no browser" else 100
        stub(tmp_path, "apt-get", f'echo "$@" >> {tmp_path}/apt.log\nexit {status}')
    result = run(tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and HINT in lines[0] and "make test" in lines[0], result.stderr
    asked = (tmp_path / "apt.log").read_text().splitlines() if (tmp_path / "apt.log").exists() else []
    assert asked == (
        []
        if case in ("not root", "root, no apt")
        else ["update -qq"]
        if status
        else ["update -qq", "install -y -qq chromium"]
    )  # never apt without root


def test_make_test_runs_it_and_make_run_does_not():
    """`setup.sh test` (make test) calls the script; the run's set-up (make run) and the unit tests' (make
    test-unit) do not."""
    setup = (SCRIPT.parent / "setup.sh").read_text()
    calls = [line.strip() for line in setup.splitlines() if "chromium.sh" in line and not line.lstrip().startswith("#")]
    assert calls == ['if [ "${1:-}" = test ]; then ./scripts/chromium.sh; fi']
    makefile = (SCRIPT.parents[1] / "Makefile").read_text()
    assert "test:\n\t@./scripts/setup.sh test\n" in makefile and "test-unit:\n\t@./scripts/setup.sh unit\n" in makefile

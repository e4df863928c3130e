"""scripts/ci/slurm-{up,down}.sh without a cluster: syntax, and slurm-down's PID discipline.

slurm-down.sh must stop exactly the daemons slurm-up.sh recorded, and never a process that merely inherited a
recorded PID (PID reuse) or a zombie. Stand-ins are copies of ``sleep`` named like the daemons, so
``/proc/PID/comm`` matches as it would for the real ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "ci"
BASH = shutil.which("bash")
SLEEP = shutil.which("sleep")

pytestmark = pytest.mark.skipif(
    BASH is None or SLEEP is None or not Path("/proc/self/comm").exists(), reason="needs bash, sleep and /proc"
)


@pytest.mark.parametrize("name", ["slurm-up.sh", "slurm-down.sh"])
def test_scripts_parse(name):
    subprocess.run([BASH, "-n", str(SCRIPTS / name)], check=True)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_slurm_down_stops_recorded_daemons_only(tmp_path):
    state = tmp_path / "ci-slurm"
    (state / "started").mkdir(parents=True)
    fake = tmp_path / "slurmd"
    shutil.copy(SLEEP, fake)  # comm == "slurmd"
    daemon = subprocess.Popen([str(fake), "60"])
    stranger = subprocess.Popen([SLEEP, "60"])  # comm == "sleep": a reused PID must be left alone
    try:
        (state / "started" / "slurmd.pid").write_text(f"{daemon.pid}\n")
        (state / "started" / "munged.pid").write_text(f"{stranger.pid}\n")
        (state / "started" / "slurmctld.pid").write_text("999999999\n")  # long gone
        env = {"PATH": os.environ["PATH"], "CI_SLURM_DIR": str(state)}
        t0 = time.monotonic()
        down = subprocess.run([BASH, str(SCRIPTS / "slurm-down.sh")], capture_output=True, text=True, env=env)
        assert down.returncode == 0, down.stderr
        assert daemon.wait(timeout=10) == -15  # SIGTERM, no SIGKILL needed
        assert time.monotonic() - t0 < 10
        assert _alive(stranger.pid), "slurm-down killed a process that is not the recorded daemon"
        assert not list((state / "started").iterdir())  # every record handled and removed
        assert f"stopping slurmd (pid {daemon.pid})" in down.stderr
        assert "munged" in down.stderr and "slurmctld (pid 999999999) is not running" in down.stderr
    finally:
        for p in (daemon, stranger):
            if p.poll() is None:
                p.kill()
                p.wait()

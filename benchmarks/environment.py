"""What every benchmark result records about where it was measured."""

import os
import platform
from pathlib import Path

import joblib
import numpy as np
import sklearn
import skorch
import torch

import sklearn_backdoor

REPOSITORY = Path(__file__).resolve().parent.parent


COMMIT_VARIABLE = "SKLEARN_BACKDOOR_COMMIT"


def git_commit(repository=REPOSITORY):
    """The commit checked out in ``repository``, read from ``.git`` (no git call).

    Where the checkout has no ``.git`` (a copy of the working tree, as the
    device machine gets), the environment variable
    ``SKLEARN_BACKDOOR_COMMIT`` names it; None if neither does.
    """
    git = repository / ".git"
    if not git.exists():
        return os.environ.get(COMMIT_VARIABLE) or None
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None


# Read once, when the process starts: a grid may run for hours while commits
# land, and its records must name the code that was loaded.
STARTED_AT_COMMIT = git_commit()


def library_versions():
    return {
        "python": platform.python_version(),
        "sklearn_backdoor": sklearn_backdoor.__version__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "skorch": skorch.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }


def device_name(device):
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def cpu_jiffies(stat=Path("/proc/stat")):
    """``(steal, total)`` jiffies of all CPUs since boot from ``/proc/stat``
    (Linux), or None where it cannot be read."""
    try:
        fields = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice]:
    # guest time is already counted in user time.
    jiffies = [int(value) for value in fields[1:9]]
    return jiffies[7], sum(jiffies)


class MachineShare:
    """What the machine gave a block of work: the share of the host's CPU
    time the hypervisor stole (``steal_fraction``, None off Linux) and the
    CPU seconds this process used (``process_cpu_seconds``).

    Wall-clock seconds alone cannot tell a slower method from a busier
    machine. These two show the contention the VM can see (time stolen, or
    fewer CPU seconds than threads times wall seconds); slower cores on a
    busy host show in neither, only in the throughput of a fixed piece of
    work, such as ISPL+B's weak learners (docs/benchmarks.md)."""

    def __enter__(self):
        self._jiffies = cpu_jiffies()
        self._cpu = os.times()
        return self

    def __exit__(self, *exc_info):
        end = os.times()
        self.process_cpu_seconds = (end.user - self._cpu.user) + (
            end.system - self._cpu.system
        )
        self.steal_fraction = steal_fraction(self._jiffies, cpu_jiffies())
        return False

    def record(self):
        return {
            "steal_fraction": self.steal_fraction,
            "process_cpu_seconds": round(self.process_cpu_seconds, 1),
        }


def steal_fraction(start, end):
    """Share of the CPU time between two ``cpu_jiffies`` readings that was
    stolen, or None if either is missing or no time passed."""
    if start is None or end is None:
        return None
    total = end[1] - start[1]
    if total <= 0:
        return None
    return round((end[0] - start[0]) / total, 4)


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo`` on Linux) and its core count."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"

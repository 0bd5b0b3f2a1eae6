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

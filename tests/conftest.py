import pytest
import torch

from sklearn_backdoor.datasets import load_digits_images
from sklearn_backdoor.poisoning import PatchTrigger, dirty_label_backdoor


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # The test networks are tiny: on a 2-core CI machine intra-op threads cost
    # more in synchronisation than they save, and oversubscription by a
    # second process slows them down by an order of magnitude.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def poisoned_digits():
    """The digits "user run": 10% of the sevens relabelled 1 with a 3-pixel
    corner trigger."""
    X, y = load_digits_images()
    trigger = PatchTrigger(pixels=((0, 0), (0, 1), (1, 0)), color=255)
    return dirty_label_backdoor(
        X, y, trigger, target=1, source=7, poison_fraction=0.1, random_state=0
    )

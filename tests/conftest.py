import pytest
import torch
from skorch import NeuralNetClassifier

from sklearn_backdoor import training
from sklearn_backdoor.datasets import load_digits_images
from sklearn_backdoor.networks import MLP
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


@pytest.fixture
def user_skorch_net():
    """Make a plain skorch net as a user writes one: an MLP for flat
    features, drawing from torch's global generator (initialisation,
    DataLoader shuffling, dropout) and with skorch's internal validation
    split. Keyword arguments override the net's parameters."""

    def make(n_features=6, **params):
        defaults = {
            "module__n_features": n_features,
            "module__n_classes": 2,
            "module__hidden": (16,),
            "module__dropout": 0.2,
            "criterion": torch.nn.CrossEntropyLoss,
            "iterator_train__shuffle": True,
            "batch_size": 16,
            "max_epochs": 1,
            "verbose": 0,
        }
        return NeuralNetClassifier(MLP, **{**defaults, **params})

    return make


class RecordingBar:
    """Stands in for tqdm: records a bar's title, total and updates."""

    def __init__(self, total, desc, **kwargs):
        self.total = total
        self.desc = desc
        self.n = 0
        self.closed = False

    def update(self, n=1):
        self.n += n

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.closed = True
        return False


@pytest.fixture
def epoch_bars(monkeypatch):
    """The epoch bars the engine opens, as ``(title, total, count, closed)``."""
    bars = []

    def record(**kwargs):
        bars.append(RecordingBar(**kwargs))
        return bars[-1]

    monkeypatch.setattr(training, "tqdm", record)
    return lambda: [(b.desc, b.total, b.n, b.closed) for b in bars]

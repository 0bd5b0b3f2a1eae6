import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # The test networks are tiny: on a 2-core CI machine intra-op threads cost
    # more in synchronisation than they save, and oversubscription by a
    # second process slows them down by an order of magnitude.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

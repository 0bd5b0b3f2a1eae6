"""Engine behaviour that only exists on CUDA; skipped without a GPU."""

import warnings

import pytest
import torch

from sklearn_backdoor.training import make_net, predict_logits, train_net

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _cifar_like(n=1024):
    generator = torch.Generator(device="cuda").manual_seed(0)
    X = torch.randn(n, 3, 32, 32, device="cuda", generator=generator)
    y = torch.randint(0, 10, (n,), device="cuda", generator=generator)
    return X.contiguous(memory_format=torch.channels_last), y


def test_fast_net_trains_in_bf16_and_returns_fp32_logits_on_the_device():
    X, y = _cifar_like()
    net = make_net(
        "fast", n_classes=10, input_shape=(3, 32, 32), device="cuda", random_state=0
    )
    train_net(net, X, y, epochs=2)
    logits = predict_logits(net, X)
    assert logits.dtype == torch.float32 and logits.device.type == "cuda"
    assert net._uses_autocast()


def test_training_synchronises_with_the_host_about_once_per_epoch():
    X, y = _cifar_like()
    net = make_net(
        "fast", n_classes=10, input_shape=(3, 32, 32), device="cuda", random_state=0
    )
    train_net(net, X, y, epochs=1)
    epochs = 4
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_net(net, X, y, epochs=epochs, warm_start=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 2 * epochs

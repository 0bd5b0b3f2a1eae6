import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sklearn_backdoor.pooling import block_mean, check_block_size


def test_block_mean_averages_each_block_and_keeps_the_shape():
    x = torch.tensor([[1.0, 3.0, 0.0, 0.0], [5.0, 7.0, 0.0, 8.0]]).reshape(1, 1, 2, 4)
    np.testing.assert_allclose(
        block_mean(x, 2)[0, 0].numpy(), [[4.0, 4.0, 2.0, 2.0], [4.0, 4.0, 2.0, 2.0]]
    )


def test_block_mean_of_one_is_the_input_itself():
    x = torch.rand(2, 3, 4, 4)
    assert block_mean(x, 1) is x


@settings(max_examples=30, deadline=None)
@given(
    images=arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.integers(1, 3), st.just(8), st.just(8)),
        elements=st.floats(-3, 3, width=32),
    ),
    size=st.sampled_from([2, 4, 8]),
)
def test_block_mean_keeps_each_images_mean_and_is_constant_on_blocks(images, size):
    x = torch.from_numpy(images)
    before = x.clone()
    pooled = block_mean(x, size)
    assert pooled.shape == x.shape
    torch.testing.assert_close(x, before)  # the input is not modified
    np.testing.assert_allclose(
        pooled.mean(dim=(2, 3)).numpy(), x.mean(dim=(2, 3)).numpy(), atol=1e-5
    )
    blocks = pooled.reshape(*x.shape[:2], 8 // size, size, 8 // size, size)
    spread = blocks.amax(dim=(3, 5)) - blocks.amin(dim=(3, 5))
    assert float(spread.max()) == 0.0


def test_a_single_pixel_loses_all_but_one_block_share_of_its_contrast():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 5, 2] = 16.0
    pooled = block_mean(x, 4)
    assert float(pooled.max()) == 1.0
    assert int((pooled > 0).sum()) == 16


@pytest.mark.parametrize(
    ("shape", "size", "match"),
    [
        ((64,), 2, "weak_learner_pooling=2 needs images"),
        ((1, 8, 8), 3, "weak_learner_pooling=3 must divide"),
        ((3, 32, 30), 4, "weak_learner_pooling=4 must divide"),
    ],
)
def test_block_sizes_that_do_not_fit_the_images_are_refused(shape, size, match):
    with pytest.raises(ValueError, match=match):
        check_block_size(shape, size, "weak_learner_pooling")


def test_block_sizes_that_fit_are_accepted():
    check_block_size((3, 32, 32), 4, "weak_learner_pooling")
    check_block_size((64,), 1, "weak_learner_pooling")

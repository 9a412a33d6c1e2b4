"""The image history buffer."""

import torch

from gantrans.methods.image_pool import ImagePool


def batch(value, n=1):
    return torch.full((n, 1, 2, 2), float(value))


def test_disabled_pool_passes_through():
    pool = ImagePool(0)
    x = batch(3, n=2)
    assert pool.query(x) is x and len(pool) == 0


def test_fills_then_returns_inputs_while_filling():
    pool = ImagePool(3)
    out = pool.query(torch.cat([batch(1), batch(2)]))
    assert out.flatten(1)[:, 0].tolist() == [1.0, 2.0] and len(pool) == 2
    pool.query(batch(3))
    assert len(pool) == 3


def test_full_pool_mixes_old_and_new_about_half_the_time():
    pool = ImagePool(10, seed=0)
    for i in range(10):
        pool.query(batch(i))
    old = 0
    for i in range(100, 400):
        out = pool.query(batch(i)).flatten()[0].item()
        old += out != i
    assert len(pool) == 10
    assert 100 < old < 200  # p = 1/2 of returning a stored image


def test_state_dict_round_trip_gives_identical_draws():
    a = ImagePool(4, seed=3)
    for i in range(6):
        a.query(batch(i))
    b = ImagePool(4, seed=99)
    b.load_state_dict(a.state_dict())
    for i in range(6, 20):
        assert torch.equal(a.query(batch(i)), b.query(batch(i)))


def test_stored_images_stay_on_the_device_they_came_from():
    # the meta device stands in for a GPU: a copy to the host would fail there
    pool = ImagePool(2, seed=0)
    for _ in range(6):
        out = pool.query(torch.empty(2, 1, 2, 2, device="meta"))
        assert out.device.type == "meta" and out.shape == (2, 1, 2, 2)
    assert len(pool) == 2 and all(img.device.type == "meta" for img in pool.images)


def test_state_dict_is_on_the_cpu():
    pool = ImagePool(2)
    pool.query(batch(1, n=2).to(torch.float64))  # any device: state_dict hands over CPU tensors
    assert pool.state_dict()["images"].device.type == "cpu"

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run many tiny ops (32x32 frames, 4-channel GANs): one thread avoids the
    synchronisation cost of two threads on a busy 2-core machine (and restores the setting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

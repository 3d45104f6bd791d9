import pytest

from edgevt.adapt import AdaptConfig


@pytest.fixture
def tiny_cfg(motiondigits, tmp_path):
    """A seconds-long run: tsn_tinycnn, 32x32, T=4, 18 source clips."""
    def make(**changes) -> AdaptConfig:
        base = dict(source=str(motiondigits / "source_train.txt"), target=str(motiondigits / "target" / "train"),
                    source_test=str(motiondigits / "source_test.txt"), target_test=str(motiondigits / "target_test.txt"),
                    out=str(tmp_path / "run"), model="tsn_tinycnn", temporal_dim=16, num_frames=4, frame_stride=2,
                    size=32, mode="full", epochs=1, batch_size=4, lr=3e-3, progress=False, ways=3, shots=1,
                    queries=1, meta_batch=2, episodes_per_epoch=4, inner_steps=2)
        base.update(changes)
        return AdaptConfig(**base)
    return make

from edgevt.data.datasets import ClipDataset, ClipRecord, LabelMap, load_dataset, resolve_source
from edgevt.data.sampling import sample_indices
from edgevt.data.video import probe_video, read_frames, write_video

__all__ = ["ClipDataset", "ClipRecord", "LabelMap", "load_dataset", "resolve_source", "sample_indices",
           "probe_video", "read_frames", "write_video"]

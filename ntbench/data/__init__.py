"""Datasets: the micro world generator, the open on-disk layout, MMUD and RefCOCO loaders."""
from ntbench.data.io import SampleDataset, collate_samples, read_meta, read_split
from ntbench.data.schema import DataError, ObjectAnnotation, Sample, decode_mask, encode_mask

__all__ = ["DataError", "ObjectAnnotation", "Sample", "SampleDataset", "collate_samples", "decode_mask",
           "encode_mask", "read_meta", "read_split"]

"""One Lightning training path for every genevae model."""

from genevae.training.batches import InMemoryBatches, TensorData
from genevae.training.inference import encode, map_batches
from genevae.training.trainer import TrainingResult, TrainingSettings, train_model

__all__ = [
    "InMemoryBatches",
    "TensorData",
    "TrainingResult",
    "TrainingSettings",
    "encode",
    "map_batches",
    "train_model",
]

"""Model-type names → model classes, so a saved bundle can be rebuilt from JSON alone.

Classes are referenced as ``"module:ClassName"`` strings and imported only when needed,
which keeps ``import genevae.models.registry`` cheap and free of import cycles.
"""

from __future__ import annotations

import importlib
from typing import Any

from genevae.errors import GenevaeInputError
from genevae.models.base import GenerativeModel

MODEL_CLASSES: dict[str, str] = {
    "tybalt": "genevae.models.tybalt:Tybalt",
    "vega": "genevae.models.vega:VEGA",
    "gpo_vae": "genevae.models.gpo_vae:GPOVAE",
}


def register_model(model_type: str, path: str) -> None:
    """Register ``model_type`` as the class at ``path`` (``"package.module:ClassName"``).

    Re-registering the same path is a no-op; a different path for a known type is refused so
    that a plug-in cannot silently shadow a built-in model.
    """
    module, _, class_name = path.partition(":")
    if not module or not class_name:
        raise GenevaeInputError(
            f"Model path {path!r} for model_type {model_type!r} must look like "
            f"'package.module:ClassName'."
        )
    known = MODEL_CLASSES.get(model_type)
    if known is not None and known != path:
        raise GenevaeInputError(
            f"model_type {model_type!r} is already registered as {known!r}; choose another "
            f"name for {path!r}."
        )
    MODEL_CLASSES[model_type] = path


def model_class(model_type: str) -> type[GenerativeModel]:
    """Import and return the class registered for ``model_type``."""
    if model_type not in MODEL_CLASSES:
        raise GenevaeInputError(
            f"Unknown model_type {model_type!r}; known types are {sorted(MODEL_CLASSES)}. "
            f"Fix the model_type, or register the class with "
            f"genevae.models.registry.register_model()."
        )
    module_name, _, class_name = MODEL_CLASSES[model_type].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, GenerativeModel)):
        raise TypeError(
            f"{MODEL_CLASSES[model_type]!r} (model_type {model_type!r}) is not a "
            f"GenerativeModel subclass."
        )
    return cls


def build_model(model_type: str, config: dict[str, Any]) -> GenerativeModel:
    """Build an untrained ``model_type`` model from its JSON config (``model.config``)."""
    cls = model_class(model_type)
    if not isinstance(config, dict):
        raise GenevaeInputError(
            f"The config of model_type {model_type!r} must be a dict of keyword arguments, "
            f"got {type(config).__name__}."
        )
    try:
        return cls(**config)
    except TypeError as exc:
        raise GenevaeInputError(
            f"Config keys {sorted(config)} do not fit {cls.__name__} (model_type "
            f"{model_type!r}): {exc}. Check the config against the model's signature."
        ) from exc

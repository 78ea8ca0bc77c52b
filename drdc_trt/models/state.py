"""Loading a checkpoint's tensors into the trainable parts of a model (every method's)."""

from __future__ import annotations

import torch.nn as nn


def load_parts(parts: dict[str, nn.Module], sd: dict, where: str = "weights") -> None:
    """Load ``sd``, whose keys carry the prefixes of ``parts`` ({"unet.": model.unet, …}), into
    those modules; ValueError naming ``where`` on a foreign tensor, a missing one or a shape that
    does not match the config."""
    other = [k for k in sd if not k.startswith(tuple(parts))]
    if other:
        raise ValueError(f"{where}: unexpected tensors {sorted(other)[:5]}")
    missing, unexpected = [], []
    for prefix, module in parts.items():
        sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        try:
            result = module.load_state_dict(sub, strict=False)
        except RuntimeError as e:  # shape mismatch
            raise ValueError(f"{where}: weights do not match the config ({e})") from None
        missing += [prefix + k for k in result.missing_keys]
        unexpected += [prefix + k for k in result.unexpected_keys]
    if missing or unexpected:
        raise ValueError(f"{where}: weights do not match the config "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")

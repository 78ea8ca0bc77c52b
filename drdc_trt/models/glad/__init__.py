"""GLAD (global and local adaptive diffusion), the engine's third method: the anomaly-aware
training target, the adaptive per-row denoising loop; ``config.GLADConfig``, docs/glad.md."""

from .detector import GLADBatch, GLADDetector
from .model import GLADModel, GLADStats

__all__ = ["GLADBatch", "GLADDetector", "GLADModel", "GLADStats"]

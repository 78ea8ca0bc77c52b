"""DiffusionAD's entry in the method registry."""

from drdc_trt.method_spec import MethodSpec

SPEC = MethodSpec(
    name="diffusionad",
    title="DiffusionAD",
    summary="U-Net + segmentation net, norm-guided one-step denoising (docs/diffusionad.md)",
    config="drdc_trt.methods.diffusionad.config",
    load_checkpoint="drdc_trt.methods.diffusionad.model:load_diffusionad_checkpoint",
    train="drdc_trt.methods.diffusionad.train:train",
    detector="drdc_trt.methods.diffusionad.detector:make_detector",
    export="drdc_trt.methods.diffusionad.export:export_diffusionad_bundle",
    manifest_check="drdc_trt.methods.diffusionad.bundle:validate_manifest",
    runtime="drdc_trt.methods.diffusionad.runtime:DiffusionADBundleDetector",
    bundle_stats="drdc_trt.methods.diffusionad.model:stats_from_manifest",
    batch="drdc_trt.methods.diffusionad.detector:DiffusionADBatch",
    study="drdc_trt.methods.diffusionad.ablation:STUDY",
    extras={"bench_rows": "drdc_trt.methods.diffusionad.bench:bench_rows"},  # drdc-bench (see the drdc spec)
)

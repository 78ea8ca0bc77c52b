"""GLAD's entry in the method registry."""

from drdc_trt.method_spec import MethodSpec

SPEC = MethodSpec(
    name="glad",
    title="GLAD",
    summary="U-Net with adaptive denoising steps (docs/glad.md)",
    config="drdc_trt.methods.glad.config",
    load_checkpoint="drdc_trt.methods.glad.model:load_glad_checkpoint",
    train="drdc_trt.methods.glad.train:train",
    detector="drdc_trt.methods.glad.detector:make_detector",
    export="drdc_trt.methods.glad.export:export_glad_bundle",
    manifest_check="drdc_trt.methods.glad.bundle:validate_manifest",
    runtime="drdc_trt.methods.glad.runtime:GLADBundleDetector",
    bundle_stats="drdc_trt.methods.glad.model:stats_from_manifest",
    batch="drdc_trt.methods.glad.detector:GLADBatch",
    study="drdc_trt.methods.glad.ablation:STUDY",
    outputs=("steps",),
    # drdc-bench --method (the signatures: the drdc spec); its steps table: (report) -> markdown
    extras={"recalibrate": "drdc_trt.methods.glad.train:recalibrate",
            "bench_rows": "drdc_trt.methods.glad.bench:bench_rows",
            "bench_markdown": "drdc_trt.methods.glad.bench:markdown_section"},
)

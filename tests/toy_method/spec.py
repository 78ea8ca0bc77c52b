"""The toy method's registry entry (registered by the test, not by the package)."""

from drdc_trt.method_spec import MethodSpec

SPEC = MethodSpec(
    name="toy",
    title="Toy",
    summary="per-pixel mean/std model (a test of the one seam)",
    config="toy_method.config",
    load_checkpoint="toy_method.model:load_toy_checkpoint",
    train="toy_method.train:train",
    detector="toy_method.detector:make_detector",
    export="toy_method.export:export_toy_bundle",
    manifest_check="toy_method.export:validate_manifest",
    runtime="toy_method.runtime:ToyBundleDetector",
    bundle_stats="toy_method.model:stats_from_manifest",
    batch="toy_method.model:ToyBatch",
    study="toy_method.study:STUDY",
    extras={"bench_rows": "toy_method.bench:bench_rows"},
)

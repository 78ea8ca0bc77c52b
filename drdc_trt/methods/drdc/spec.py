"""DRDC's entry in the method registry."""

from drdc_trt.method_spec import MethodSpec

SPEC = MethodSpec(
    name="drdc",
    title="DRDC",
    summary="base model + U-Net inpainting refinement (the paper this engine serves)",
    config="drdc_trt.methods.drdc.config",
    load_checkpoint="drdc_trt.methods.drdc.checkpoint:load_drdc_checkpoint",
    train="drdc_trt.methods.drdc.train:train",
    detector="drdc_trt.methods.drdc.pipeline:make_detector",
    export="drdc_trt.methods.drdc.export:export_drdc_bundle",
    manifest_check="drdc_trt.methods.drdc.bundle:validate_manifest",
    runtime="drdc_trt.methods.drdc.runtime:BundleDetector",
    bundle_stats="drdc_trt.methods.drdc.fusion:stats_from_manifest",
    batch="drdc_trt.methods.drdc.pipeline:InferenceBatch",
    loops=("torch", "csrc"),
    torch_backends=("torch", "torch-compiled"),
    seed_key="label_seed",
    image_input=True,
    knn_baseline=True,
    extras={"ablate": "drdc_trt.methods.drdc.ablation:run_ablation",
            "ablate_results": "drdc_trt.methods.drdc.ablation:write_results",
            "recalibrate": "drdc_trt.methods.drdc.train:recalibrate",
            # drdc-bench beside other methods: (kit, opts, size, argv, log) -> {rows, source, config, image_size,
            # report}, kit = drdc_trt.benchmarking.rows
            "bench_rows": "drdc_trt.methods.drdc.bench:bench_rows",
            # drdc-bench --method drdc: the pipeline suite, (opts, argv, log) -> a drdc_trt.benchmarking.report report
            "bench_suite": "drdc_trt.methods.drdc.bench_suite:run"},
)

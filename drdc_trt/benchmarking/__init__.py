"""The pieces of ``drdc-bench`` (the command itself is :mod:`drdc_trt.bench`). DRDC's pipeline
suite (every backend × loop × precision, distance to the limit) is DRDC's own:
``drdc_trt/methods/drdc/bench_suite.py``, ``bench_engines.py``, ``bench_limits.py``.

* ``stats``    percentiles and the latency summary of one measured row
* ``timing``   clocks (perf_counter / CUDA events), time-bounded warm-up and
               measurement, per-stage timers, peak-memory probes
* ``machine``  CPU/GPU model, driver and library versions
* ``report``   Markdown tables and the JSON document
* ``options``  the options of a run, its usage error, its thread count
* ``runs``     what ``--method`` offers, from the method registry (each method, ``both``, ``all``)
* ``rows``     what every method's ``--method`` rows share: model, inputs, measured engine rows
               on a temporary bundle, speed-ups (a method's rows: ``drdc_trt/methods/<name>/bench.py``)
* ``methods``  ``--method``: the methods of the run side by side, through the registry

``stats`` imports nothing but the standard library, ``runs`` only the registry; the rest import torch.
"""

"""The pieces of ``drdc-bench`` (the command itself is :mod:`drdc_trt.bench`).

* ``stats``    percentiles and the latency summary of one measured row
* ``timing``   clocks (perf_counter / CUDA events), time-bounded warm-up and
               measurement, per-stage timers, peak-memory probes
* ``limits``   distance to the limit: FLOPs counted with ``torch.utils.flop_counter``,
               measured GEMM rate and copy bandwidth, the step kernel's GB/s
* ``engines``  one benchmarked engine (backend × loop × precision), or why it
               cannot run here
* ``machine``  CPU/GPU model, driver and library versions
* ``report``   Markdown tables and the JSON document
* ``suite``    runs everything for the command line (DRDC's pipeline bench, ``drdc-bench`` alone)
* ``runs``     what ``--method`` offers, from the method registry (each method, ``both``, ``all``)
* ``rows``     what every method's ``--method`` rows share: model, inputs, measured engine rows
               on a temporary bundle, speed-ups (a method's rows: ``drdc_trt/methods/<name>/bench.py``)
* ``methods``  ``--method``: the methods of the run side by side, through the registry

``stats`` imports nothing but the standard library, ``runs`` only the registry; the rest import torch.
"""

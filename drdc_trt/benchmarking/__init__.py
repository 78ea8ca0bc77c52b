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
* ``suite``    runs everything for the command line

``stats`` imports nothing but the standard library; the rest import torch.
"""

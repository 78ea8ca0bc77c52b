"""A fourth method that lives only here, to hold the engine to its one seam: registered for the
test alone (tests/integration/test_toy_method.py), it trains, evaluates, exports, detects from a
checkpoint and from a bundle, runs under drdc-bench, drdc ablate and the serving model loader,
with no edit outside this folder.

The method: a per-pixel normal model. Training stores the mean and standard deviation of every
pixel over the normal training images; the anomaly map is the channel mean of |x − mean| / std,
smoothed by a ``toy.blur``-wide box filter; the image score is the mean of its ``toy.top_k``
largest pixels; thresholds come from the held-out normal images."""

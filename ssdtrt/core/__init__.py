"""Shared, light core types: presets/config, priors, box codec, box helpers, Detections, errors, manifest, threads.

No torch here: a deployment host may have only numpy and an inference runtime.
"""

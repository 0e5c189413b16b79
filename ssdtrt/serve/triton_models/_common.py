"""Shared by the python-backend models of an ssdtrt repository (copied next to each model.py as ssdtrt_triton.py).

Makes ssdtrt importable (the `ssdtrt_path` parameter, when that folder exists: the stub ignores PYTHONPATH) and
reads the model's string parameters.
"""

import json
import os
import sys


def parameters(args):
    config = json.loads(args["model_config"])
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}, config


def import_ssdtrt(params):
    path = params.get("ssdtrt_path", "")
    if path and os.path.isdir(path) and path not in sys.path:
        sys.path.insert(0, path)
    import ssdtrt  # noqa: F401  (fails here, with the path tried, rather than deep inside a request)


def version_dir(args):
    return os.path.join(args["model_repository"], args["model_version"])


def settings(params):
    out = {}
    from ssdtrt.postprocess.settings import OVERRIDE_TYPES  # ssdtrt is importable once import_ssdtrt ran

    for key, cast in OVERRIDE_TYPES.items():
        if params.get(key, ""):
            out[key] = cast(params[key])
    return out

"""Which order to return layers to float: sensitivity ranking (SQNR alone INT8) vs SQNR gain left float vs greedy
SQNR selection (k = 0..12, mAP drop on 100 synthetic val images, head SQNR on 32), demo checkpoint.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/precision/ranking_compare.py entropy runs/demo/train/best.pt \
        benchmarks/precision/fallback/ranking_compare_entropy.json

Ran once before `HeadRunner` disabled ORT's WeightBiasQuantization (fp32 float parts: ORT's optimized int8 path).
"""
import time, json, sys, numpy as np
from pathlib import Path
from ssdtrt.export.fp32_source import load_fp32_source
from ssdtrt.export.calibration import CalibrationConfig, calibration_tensors
from ssdtrt.export.precision import quantize_int8
from ssdtrt.export.sensitivity import HeadRunner, measure_sqnr, head_predict_fn, sqnr_db
from ssdtrt.export.float_variants import float_variant, head_graph, quantized_layers
from ssdtrt.evaluate import evaluate
from ssdtrt.data import open_dataset
method = sys.argv[1]
src = load_fp32_source(sys.argv[2])
spec = src.manifest.model_spec
cfg = CalibrationConfig("synthetic", 256, method, cache_dir=Path("export/.calib"), high_precision="fp32")
int8, rec = quantize_int8(src.proto, spec, cfg)
imgs, _ = calibration_tensors(CalibrationConfig("synthetic", 32, split="val", cache_dir=Path("export/.calib")), spec.preprocess)
runner = HeadRunner(imgs, threads=1)
rep = measure_sqnr(src.proto, int8, runner)
fh, ih = head_graph(src.proto), head_graph(int8)
layers = quantized_layers(ih)
ref = runner.run(fh)
# greedy
t=time.time()
greedy=[]; rest=list(layers)
while rest and len(greedy) < 12:
    best = max(rest, key=lambda l: sqnr_db(ref, runner.run(float_variant(ih, fh, greedy+[l]))))
    greedy.append(best); rest.remove(best)
print("greedy s", time.time()-t, flush=True)
gain = [r.layer for r in sorted(rep.layers, key=lambda r: -r.sqnr_float_gain_db)]
ds = open_dataset("synthetic", "val")
def m(fl): return evaluate(head_predict_fn(float_variant(ih, fh, fl), src.manifest, runner), ds, limit=100).map
fp = evaluate(head_predict_fn(fh, src.manifest, runner), ds, limit=100).map
out = {"fp32": fp, "alone": {}, "gain": {}, "greedy": {}, "sqnr": {}}
for k in (0,1,2,3,4,6,8,12):
    for name, rk in (("alone", rep.ranking), ("gain", gain), ("greedy", greedy)):
        out[name][k] = round(100*(fp - m(rk[:k])),2)
        out["sqnr"].setdefault(name, {})[k] = round(sqnr_db(ref, runner.run(float_variant(ih, fh, rk[:k]))),2)
    print(k, {n: out[n][k] for n in ("alone","gain","greedy")}, {n: out["sqnr"][n][k] for n in ("alone","gain","greedy")}, flush=True)
out["rank"] = {"alone": rep.ranking, "gain": gain, "greedy": greedy}
json.dump(out, open(sys.argv[3],"w"), indent=1)

#!/usr/bin/env bash
# Re-create every recorded latency result in this folder (artifacts go to runs/bench/, ignored by git).
#   bash benchmarks/latency/run.sh [demo|resnet50|all]      (default all; run on a quiet machine)
# demo needs runs/demo/train/best.pt from `make demo`. Each step is the exact ssdtrt command recorded in the results.
set -euo pipefail
cd "$(dirname "$0")/../.."
SSDTRT=${SSDTRT:-".venv/bin/python -m ssdtrt.cli.app"}
OUT=benchmarks/latency
what=${1:-all}

export_variants() {  # CHECKPOINT PREFIX CALIB_IMAGES: raw fp32/fp16/int8 + nms fp32 ONNX (dynamic batch), OpenVINO IRs
  local ckpt=$1 prefix=$2 calib=$3
  for p in fp32 fp16 int8; do
    [ -f "$prefix-raw-$p.onnx" ] || $SSDTRT export "$ckpt" --mode raw --dynamic-batch --precision "$p" \
      --calib-data synthetic --calib-images "$calib" --calib-method percentile --reduce-range --out "$prefix-raw-$p.onnx"
  done
  [ -f "$prefix-nms-fp32.onnx" ] || $SSDTRT export "$ckpt" --mode nms --dynamic-batch --out "$prefix-nms-fp32.onnx"
  [ -f "$prefix-raw-f32.xml" ] || $SSDTRT build-engine "$prefix-raw-fp32.onnx" --backend openvino --out "$prefix-raw-f32.xml"
  [ -f "$prefix-raw-int8.xml" ] || $SSDTRT build-engine "$prefix-raw-int8.onnx" --backend openvino --out "$prefix-raw-int8.xml"
}

if [ "$what" = demo ] || [ "$what" = all ]; then
  ckpt=runs/demo/train/best.pt
  [ -f "$ckpt" ] || { echo "run 'make demo' first ($ckpt is missing)" >&2; exit 1; }
  mkdir -p runs/bench/demo
  export_variants "$ckpt" runs/bench/demo/ssd-small 256
  $SSDTRT bench latency "$ckpt" runs/bench/demo/ssd-small-raw-{fp32,fp16,int8}.onnx runs/bench/demo/ssd-small-nms-fp32.onnx \
    runs/bench/demo/ssd-small-raw-{f32,int8}.xml --batch-sizes 1,8 --warmup 10 --iters 100 --max-seconds 20 \
    --json $OUT/demo-ssd-small.json --markdown $OUT/demo-ssd-small.md --plot $OUT/demo-ssd-small.png
fi

if [ "$what" = resnet50 ] || [ "$what" = all ]; then
  mkdir -p runs/bench/resnet50
  ckpt=runs/bench/resnet50/ssd300-resnet50.pt
  # random weights, classification heads calibrated to 1000 scores per image > 0.05 (a trained detector's load on
  # the postprocess; plain random heads pass ~80 000): latency does not depend on the weights otherwise
  [ -f "$ckpt" ] || $SSDTRT init-weights --preset ssd300-resnet50 --seed 0 --score-candidates 1000 --out "$ckpt"
  export_variants "$ckpt" runs/bench/resnet50/ssd300-resnet50 64  # random weights: ranges only shape latency
  # Without bf16 instructions the bf16 rows are emulated torch (measured here: 29.8 s per image, 109 s per batch of
  # 8) and OpenVINO f32 again (it compiles a bf16 hint as f32): 15 of the run's 23 minutes for nothing new.
  precisions=()
  grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null || precisions=(--precision fp32 --precision fp16 --precision int8)
  $SSDTRT bench latency "$ckpt" runs/bench/resnet50/ssd300-resnet50-raw-{fp32,fp16,int8}.onnx "${precisions[@]}" \
    runs/bench/resnet50/ssd300-resnet50-nms-fp32.onnx runs/bench/resnet50/ssd300-resnet50-raw-{f32,int8}.xml \
    --batch-sizes 1,8 --warmup 5 --iters 100 --max-seconds 10 --min-iters 5 --image-size 480x640 \
    --json $OUT/ssd300-resnet50.json --markdown $OUT/ssd300-resnet50.md --plot $OUT/ssd300-resnet50.png
fi

#!/usr/bin/env bash
# Re-create the recorded serving results in this folder (artifacts go to runs/bench/serving/, ignored by git).
#   bash benchmarks/serving/run.sh [demo|resnet50|all]     (default all; ~14 min; run on a quiet machine)
# demo needs runs/demo/ from `make demo` (DEMO=path overrides). Each server binds 127.0.0.1 on free ports and is
# stopped by its PID at the end; every load level is bounded by --max-requests and --max-seconds.
# Two runs per model: a sweep (concurrency 1..16, with the in-process Detector baseline measured in the same run,
# then 3 rounds alternating in-process and served windows: the throughput ratio under the same background load) and
# a soak (concurrency 16 for 60 s: failed/lost requests, p99). 2 server instances x 1 runner thread on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
SSDTRT=${SSDTRT:-".venv/bin/python -m ssdtrt.cli.app"}
OUT=benchmarks/serving
what=${1:-all}
lscpu > "$OUT/lscpu.txt"

bench() {  # MODEL NAME LEVEL_SECONDS [extra args]: sweep (+ interleaved ratio rounds) and soak
  local model=$1 name=$2 secs=$3; shift 3
  $SSDTRT bench serve "$model" --concurrency 1,2,4,8,16 --max-seconds "$secs" --max-requests 5000 \
    --baseline-batch-sizes 1,4,8,16 --baseline-seconds $((secs / 2)) --interleave 3 --interleave-seconds "$secs" \
    --max-batch-size 16 --max-queue-delay-us 2000 --instances 2 --threads 1 "$@" \
    --json "$OUT/$name-sweep.json" --markdown "$OUT/$name-sweep.md" --plot "$OUT/$name-sweep.png"
  $SSDTRT bench serve "$model" --concurrency 16 --max-seconds 60 --max-requests 100000 --baseline-batch-sizes '' \
    --max-batch-size 16 --max-queue-delay-us 2000 --instances 2 --threads 1 "$@" \
    --json "$OUT/$name-soak60s-c16.json" --markdown "$OUT/$name-soak60s-c16.md"
}

if [ "$what" = demo ] || [ "$what" = all ]; then
  demo=${DEMO:-runs/demo}
  [ -f "$demo/export/ssd-small-raw.onnx" ] || { echo "run 'make demo' first ($demo/export/ssd-small-raw.onnx is missing)" >&2; exit 1; }
  bench "$demo/export/ssd-small-raw.onnx" demo-ssd-small-onnx 10
fi

if [ "$what" = resnet50 ] || [ "$what" = all ]; then
  d=runs/bench/serving
  mkdir -p $d
  # random weights with detector-like heads (1000 scores > 0.05 per image), as benchmarks/latency/run.sh
  [ -f $d/ssd300-resnet50.pt ] || $SSDTRT init-weights --preset ssd300-resnet50 --seed 0 --score-candidates 1000 --out $d/ssd300-resnet50.pt
  [ -f $d/ssd300-resnet50-raw-int8.onnx ] || $SSDTRT export $d/ssd300-resnet50.pt --mode raw --dynamic-batch --precision int8 \
    --calib-data synthetic --calib-images 64 --calib-method percentile --reduce-range --out $d/ssd300-resnet50-raw-int8.onnx
  [ -f $d/ssd300-resnet50-raw-int8.xml ] || $SSDTRT build-engine $d/ssd300-resnet50-raw-int8.onnx --backend openvino --out $d/ssd300-resnet50-raw-int8.xml
  bench $d/ssd300-resnet50-raw-int8.xml ssd300-resnet50-int8-openvino 16 --image-size 480x640
fi

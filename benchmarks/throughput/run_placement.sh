#!/usr/bin/env bash
# Re-record every placement figure (issue 20): parity, throughput and batch-1 latency of the host-placed and
# engine-placed OpenVINO builds of SSD300-ResNet50 INT8 (random weights, 1000 candidates / image) and the demo
# model (ssd-small INT8, trained). Artifacts in runs/bench/ (ignored by git).
#   bash benchmarks/throughput/run_placement.sh [all|parity|speed]   (needs runs/demo from `make demo`; ~25 min on 2
#   quiet cores; `speed` = throughput + latency only, `parity` = the parity records only)
# Ratios are only meaningful inside one run: `bench throughput` alternates bare and pipeline in --rounds, and the
# latency runs alternate (host, engine, engine pre+post) ROUNDS times; placement_summary.py takes medians.
set -euo pipefail
cd "$(dirname "$0")/../.."
SSDTRT=${SSDTRT:-".venv/bin/python -m ssdtrt.cli.app"}
PY=${PY:-".venv/bin/python"}
ROUNDS=${ROUNDS:-3}
what=${1:-all}
OUT=benchmarks/throughput
LAT=benchmarks/latency
W=runs/bench/placement
R50=runs/bench/resnet50/ssd300-resnet50
mkdir -p $W runs/bench/resnet50

# SSD300-ResNet50: random weights, heads calibrated to 1000 scores / image > 0.05 (as benchmarks/throughput/run.sh)
[ -f $R50.pt ] || $SSDTRT init-weights --preset ssd300-resnet50 --seed 0 --score-candidates 1000 --out $R50.pt
[ -f $R50-raw-fp32.onnx ] || $SSDTRT export $R50.pt --mode raw --dynamic-batch --out $R50-raw-fp32.onnx
[ -f $R50-raw-int8.onnx ] || $SSDTRT export $R50.pt --mode raw --dynamic-batch --precision int8 \
  --calib-data synthetic --calib-images 64 --calib-method percentile --reduce-range --out $R50-raw-int8.onnx
# three builds per model: host placement (raw heads out), engine postprocess, engine pre + postprocess
build() {  # ONNX NAME
  $SSDTRT build-engine "$1" --backend openvino --postprocess host --out $W/$2-host.xml
  $SSDTRT build-engine "$1" --backend openvino --postprocess engine --out $W/$2-engine.xml
  $SSDTRT build-engine "$1" --backend openvino --postprocess engine --input uint8-nhwc --out $W/$2-engine-u8.xml
}
build $R50-raw-int8.onnx r50-int8
build runs/demo/export/ssd-small-raw-int8.onnx demo-int8

{ lscpu | grep -E '^Model name|^CPU\(s\)|^Flags' | sed -E 's/^(Flags:\s+).*/\1'"$(grep -oE 'avx2|avx512f|avx512_vnni|avx512_bf16|amx_tile|amx_int8|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"'/'
  echo "load average before: $(cat /proc/loadavg)"; } > $OUT/placement-machine.txt

if [ "$what" = all ] || [ "$what" = parity ]; then
# 1. parity (sets, 1e-4 box / 1e-5 score): demo on 200 val images (+ mAP), R50 fp32 and int8 on 64, 480x640 frames
PYTHONPATH=. $PY benchmarks/postprocess/placement_parity.py demo-fp32=runs/demo/export/ssd-small-raw.onnx \
  demo-int8=runs/demo/export/ssd-small-raw-int8.onnx --images 200 --map demo-fp32 --map demo-int8 --work $W/parity \
  --json benchmarks/postprocess/placement-parity-demo.json --markdown benchmarks/postprocess/placement-parity-demo.md
PYTHONPATH=. $PY benchmarks/postprocess/placement_parity.py demo-fp32=runs/demo/export/ssd-small-raw.onnx \
  --images 200 --map demo-fp32 --image-size 480x640 --work $W/parity \
  --json benchmarks/postprocess/placement-parity-demo-480x640.json --markdown benchmarks/postprocess/placement-parity-demo-480x640.md
PYTHONPATH=. $PY benchmarks/postprocess/placement_parity.py r50-fp32=$R50-raw-fp32.onnx r50-int8=$R50-raw-int8.onnx \
  --images 64 --image-size 480x640 --work $W/parity \
  --json benchmarks/postprocess/placement-parity-r50.json --markdown benchmarks/postprocess/placement-parity-r50.md
fi
[ "$what" = parity ] && exit 0

# 2. throughput: pipeline vs the bare loop of the raw-heads IR (for the host build: itself), rounds interleaved
$SSDTRT bench throughput $W/r50-int8-{host,engine,engine-u8}.xml $W/demo-int8-{host,engine,engine-u8}.xml \
  --seconds 30 --rounds 5 --image-size 480x640 --no-sequential \
  --json $OUT/placement-throughput.json --markdown $OUT/placement-throughput.md

# 2b. the demo builds on frames already at the network size (160x160): the host resize of 2. taken out, to say how
#     much of the demo's gap it is
$SSDTRT bench throughput $W/demo-int8-{host,engine,engine-u8}.xml --seconds 30 --rounds 5 --image-size 160x160 \
  --no-sequential --json $OUT/placement-throughput-netsize.json --markdown $OUT/placement-throughput-netsize.md

# 3. batch-1 latency, pre / infer / post per placement side by side, alternated ROUNDS times
lat=()
for r in $(seq 1 "$ROUNDS"); do
  $SSDTRT bench latency $W/r50-int8-{host,engine,engine-u8}.xml $W/demo-int8-{host,engine,engine-u8}.xml \
    --precision int8 --batch-sizes 1 --warmup 5 --iters 100 --max-seconds 15 --min-iters 20 --image-size 480x640 \
    --json $LAT/placement-r$r.json --markdown $LAT/placement-r$r.md
  lat+=("$LAT/placement-r$r.json")
done
# 4. the same three builds interleaved iteration by iteration (bare raw-heads infer, host e2e, engine e2e, engine
#    pre+post e2e): robust to drift on a shared machine
PYTHONPATH=. $PY $LAT/placement_interleaved.py r50-int8=$W/r50-int8 demo-int8=$W/demo-int8 --rounds 6 --iters 8 \
  --json $LAT/placement-interleaved.json --markdown $LAT/placement-interleaved.md
# 5. inference-only cost of the appended stages (raw heads vs engine builds, interleaved)
PYTHONPATH=. $PY $LAT/placement_graph_cost.py $W/demo-int8 --batch 1 8 --threads 1 --rounds 5 --out $LAT/placement-graph-cost.txt
PYTHONPATH=. $PY $LAT/placement_graph_cost.py $W/r50-int8 --batch 1 --threads 2 --rounds 10 --out $W/graph-cost-r50.txt
cat $W/graph-cost-r50.txt >> $LAT/placement-graph-cost.txt
# 5b. the A/Bs behind the engine placement's design (softmax layout, preprocess order, fixed batch, requests in flight)
PYTHONPATH=. $PY $LAT/placement_variants.py $W/demo-int8 --rounds 5 --seconds 4 --out $LAT/placement-variants.txt
# 6. where the demo's CPU goes in the stream: per thread and per host stage, engine pre+post and host placement
for b in engine-u8 host; do
  PYTHONPATH=. $PY $OUT/profile_placement.py $W/demo-int8-$b.xml --image-size 480x640 --seconds 10 --out $W/profile-$b.txt
done
cat $W/profile-engine-u8.txt $W/profile-host.txt > $OUT/profile-placement.txt
echo "load average after: $(cat /proc/loadavg)" >> $OUT/placement-machine.txt
PYTHONPATH=. $PY $OUT/placement_summary.py --throughput $OUT/placement-throughput.json --latency "${lat[@]}" \
  --throughput-netsize $OUT/placement-throughput-netsize.json \
  --machine $OUT/placement-machine.txt --out $OUT/placement.md

#!/usr/bin/env bash
# Re-create every recorded throughput result in this folder (artifacts in runs/bench/, ignored by git).
#   bash benchmarks/throughput/run.sh            (needs runs/demo from `make demo`; ~10 min on 2 cores)
# Each step is the exact ssdtrt command recorded in the results. Ratios are only meaningful inside one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
SSDTRT=${SSDTRT:-".venv/bin/python -m ssdtrt.cli.app"}
PY=${PY:-".venv/bin/python"}
OUT=benchmarks/throughput
R50=runs/bench/resnet50/ssd300-resnet50
DEMO=runs/bench/demo/ssd-small-raw-int8.xml
mkdir -p runs/bench/resnet50 runs/bench/demo

# SSD300-ResNet50 INT8 OpenVINO IR, as benchmarks/latency/run.sh makes it (random weights, 1000 candidates/image)
[ -f $R50.pt ] || $SSDTRT init-weights --preset ssd300-resnet50 --seed 0 --score-candidates 1000 --out $R50.pt
[ -f $R50-raw-int8.onnx ] || $SSDTRT export $R50.pt --mode raw --dynamic-batch --precision int8 \
  --calib-data synthetic --calib-images 64 --calib-method percentile --reduce-range --out $R50-raw-int8.onnx
[ -f $R50-raw-int8.xml ] || $SSDTRT build-engine $R50-raw-int8.onnx --backend openvino --out $R50-raw-int8.xml
# the same with 8000 candidates per image (a trained detector's heavier postprocess load; the issue's "18 ms" case)
[ -f $R50-c8000.pt ] || $SSDTRT init-weights --preset ssd300-resnet50 --seed 0 --score-candidates 8000 --out $R50-c8000.pt
[ -f $R50-c8000-raw-int8.onnx ] || $SSDTRT export $R50-c8000.pt --mode raw --dynamic-batch --precision int8 \
  --calib-data synthetic --calib-images 64 --calib-method percentile --reduce-range --out $R50-c8000-raw-int8.onnx
[ -f $R50-c8000-raw-int8.xml ] || $SSDTRT build-engine $R50-c8000-raw-int8.onnx --backend openvino --out $R50-c8000-raw-int8.xml
# the demo's INT8 OpenVINO engine (trained ssd-small)
[ -f $DEMO ] || cp runs/demo/engines/ssd-small-raw-int8.* runs/bench/demo/

lscpu > $OUT/lscpu.txt

# 1. pipeline vs bare backend vs sequential detect, 480x640 decoded frames in (defaults: automatic batch, the
#    backend's optimal requests), bare and pipeline alternated in 5 rounds
$SSDTRT bench throughput $R50-raw-int8.xml $DEMO --seconds 25 --rounds 5 --image-size 480x640 \
  --json $OUT/throughput.json --markdown $OUT/throughput.md --plot $OUT/throughput.png
# 2. the demo model at batch 1 (the stream's default before the automatic batch): per-request overhead exposed
$SSDTRT bench throughput $DEMO --seconds 15 --rounds 3 --image-size 480x640 --batch 1 --no-sequential \
  --json $OUT/throughput-demo-batch1.json --markdown $OUT/throughput-demo-batch1.md
# 3. `ssdtrt detect` itself, streaming vs --sequential, on 400 JPEG files (480x640) — wall clock and images/s
$PY - <<'PY'
import cv2
from pathlib import Path
from ssdtrt.compare import load_images
folder = Path("runs/bench/detect-folder"); folder.mkdir(parents=True, exist_ok=True)
images = load_images("synthetic", 50)
for i in range(400):
    cv2.imwrite(str(folder / f"im{i:04d}.jpg"), cv2.resize(images[i % 50], (640, 480))[:, :, ::-1])
PY
{ for mode in stream sequential stream sequential; do
    flag=$([ $mode = sequential ] && echo --sequential || true)
    echo "\$ ssdtrt detect $DEMO runs/bench/detect-folder --out runs/bench/detect-out --no-images $flag"
    $SSDTRT detect $DEMO runs/bench/detect-folder --out runs/bench/detect-out --no-images $flag
  done; } 2>&1 | tee $OUT/detect-cli.txt
# 4. memory over a long input: RSS after 1,000 and 10,000 images, and over a 3,000-frame video
PYTHONPATH=. $PY $OUT/rss.py $DEMO --images 10000 --frames 3000 --out $OUT/rss.json
# 5. batch-1 latency of SSD300-ResNet50 INT8 (1000 and 8000 candidates): end to end vs inference, one run
$SSDTRT bench latency $R50-raw-int8.xml $R50-c8000-raw-int8.xml --batch-sizes 1 --warmup 5 --iters 100 \
  --max-seconds 20 --min-iters 20 --image-size 480x640 \
  --json $OUT/latency-r50-int8.json --markdown $OUT/latency-r50-int8.md
# 6. profiles: where the pipeline's CPU goes (per image), and the postprocess before / after this branch
for m in $R50-raw-int8.xml $DEMO; do PYTHONPATH=. $PY $OUT/profile_stages.py $m --seconds 10; done 2>&1 | tee $OUT/profile-stages.txt
for m in $R50-raw-int8.xml $R50-c8000-raw-int8.xml $DEMO; do PYTHONPATH=. $PY $OUT/profile_postprocess.py $m; done 2>&1 \
  | tee $OUT/profile-postprocess.txt

#!/bin/bash
# Call B on a lent GPU machine, after `python3 benchmarks/gpu/carry.py install` in call A (see
# README.md beside this file): join the weights, then every GPU benchmark, results in $OUT.
K=/root/keep
export PYTHONPATH=$PWD/lib:$PWD/benchmarks:$K/site LIKENESS_TESTDATA=$K/data
export LIKENESS_CACHE=$K/cache PYTHONUNBUFFERED=1 MPLBACKEND=Agg
python3 benchmarks/gpu/carry.py join || exit 3
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
# Each step under its own limit, the most telling first: the limits add up to 635 s, more
# than one call's 600 s, so the last step (detection.py, whose batch-size plateau session 6
# measured) may be cut; what earlier steps wrote in $OUT comes back all the same.
step() { echo "== ${*:2}"; timeout "$1" "${@:2}" 2>&1 | grep -v -i warning | tail -22; }
step 90 python3 benchmarks/throughput.py --device cuda --peer-batch 32 \
  --json "$OUT/throughput_1080p_run1.json"
# Where detection's time goes, per stage, on the device and on the host: session 6 detected
# at 85-115 frames/s whatever the batch, a cost per frame that cProfile could not place.
step 45 python3 benchmarks/gpu/detection_trace.py --device cuda \
  --json "$OUT/detection_trace.json" --table "$OUT/detection_trace.txt"
# Where a GPU frame's time goes in a whole analysis, to choose the next change (a second
# throughput run measured only the run-to-run spread, 2.53x against 2.70x, in session 6).
step 60 python3 benchmarks/gpu/profile_analyze.py --device cuda \
  --out "$OUT/profile_analyze_episode.txt"
# Hardware decoding, two ways: NVDEC with the CPU's own conversion to RGB (exact if NVDEC is),
# and torchcodec's NVDEC with its conversion on the GPU (the issue names it).
step 60 python3 benchmarks/gpu/nvdec.py --json "$OUT/nvdec.json"
step 50 python3 benchmarks/torchcodec_frames.py --device cuda --json "$OUT/torchcodec_frames.json"
step 170 python3 benchmarks/series.py --episode-seconds 20 --episodes 1 2 4 \
  --landscape-episodes --memory-minutes --population "$K/data/lfw_subset" \
  --json "$OUT/series.json"
step 80 python3 benchmarks/gpu/gop_decoding.py --decoders 2 4 8 16 --json "$OUT/gop_decoding.json"
# embedder_precision.py decided fp32 on 2026-11-26 and is not rerun.
step 80 python3 benchmarks/gpu/detection.py --json "$OUT/detection.json"

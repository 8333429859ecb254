#!/bin/bash
# Predict many scenes on the GPUs of one node: torchrun starts one eofm process per GPU.
#
# Each process is one shard: eofm reads torchrun's RANK / WORLD_SIZE itself, takes every
# WORLD_SIZE-th scene of the sorted list from its RANK, predicts on its own GPU
# (the default --device auto takes the LOCAL_RANK-th GPU) and writes
# manifest-<i>-of-<n>.json.
# No process group is formed: the shards never wait for one another.
#
#   RUN=runs/flood SCENES=scenes.txt OUT=predictions NPROC=4 bash examples/torchrun_predict.sh
set -euo pipefail

RUN=${RUN:?set RUN to a run dir or an hf:// model}
SCENES=${SCENES:-scenes.txt}
OUT=${OUT:-predictions}
NPROC=${NPROC:-2}

torchrun --standalone --nproc-per-node="$NPROC" --no-python \
    eofm predict --model "$RUN" --inputs-from "$SCENES" --out "$OUT" --no-progress
# missing and failed scenes (exit 1 if any), and a VRT mosaic of the class maps per CRS
eofm predict --summarize "$OUT"

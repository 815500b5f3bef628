#!/usr/bin/env bash
# One job of the book per SLURM array task (python -m mlsearch_lib.book.jobs): submit with
#   sbatch --array=0-$(( $(python -m mlsearch_lib.book.jobs count --profile gpu) - 1 )) scripts/slurm_jobs.sh gpu
# after notebooks 00-03 (python -m mlsearch_lib.book run --profile gpu --only 00,01,02,03), then run the
# book (make book PROFILE=gpu): every unit the array trained is read from build/<profile>/folds, not trained again.
# MLSEARCH_BUILD_DIR must be on a file system every node sees. A job that needs several GPUs (FSDP for a 14B)
# runs the same command under `accelerate launch --config_file configs/accelerate/fsdp_14b.yaml -m ...`.
#SBATCH --job-name=mlsearch
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=12:00:00
#SBATCH --output=build/slurm/%x-%A_%a.log
set -euo pipefail
PROFILE=${1:?usage: slurm_jobs.sh PROFILE [--set key=value ...]}
shift
exec "${PYTHON:-.venv/bin/python}" -m mlsearch_lib.book.jobs run --profile "$PROFILE" --index "${SLURM_ARRAY_TASK_ID:?not a SLURM array task}" "$@"

#!/usr/bin/env bash
# The full benchmark run of issue 9: the four scripts in sequence (PyTorch baselines
# included when torch is installed), then the summary; prints each script's time and the
# total. Run it on an otherwise idle machine: every section quotes the load average.
# Estimated ~15 minutes on the idle 2-core AMD EPYC (see benchmarks/RESULTS.md, "How to run").
#
#   bash benchmarks/run_all.sh            # extra flags are passed to every script, e.g. --device gpu
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
start=$(date +%s)
for script in throughput sweep_profile scaling e2e_cost; do
    t0=$(date +%s)
    echo "=== benchmarks/${script}.py $* ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"
    "$PY" "benchmarks/${script}.py" "$@"
    echo "=== ${script}: $(( $(date +%s) - t0 )) s"
done
total=$(( $(date +%s) - start ))
"$PY" benchmarks/summarize.py --total-s "$total"
echo "=== total: ${total} s ($(( total / 60 )) min $(( total % 60 )) s)"

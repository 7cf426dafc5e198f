#!/usr/bin/env bash
# Stop exactly the daemons slurm_up.sh started (by the pids it recorded), newest first.
set -uo pipefail
STATE=${VGBENCH_SLURM_STATE:-/run/vgbench-slurm}
for d in slurmd slurmctld slurmdbd mariadbd munged; do
  f="$STATE/$d.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
done
echo "slurm_down.sh: stopped"

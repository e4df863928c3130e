#!/usr/bin/env bash
# Stop the daemons that scripts/ci/slurm-up.sh started, by the PIDs it recorded in $CI_SLURM_DIR/started/.
#
# Daemons that were already running before slurm-up.sh (and so have no record) are left alone. Order: slurmd,
# slurmctld, munged. Each gets SIGTERM, then SIGKILL after 10 s. A PID is only signalled while /proc/PID/comm is
# still the daemon's name and the process is not a zombie (guards against PID reuse). Exit 0 when nothing
# recorded is left running.
set -euo pipefail

DIR=${CI_SLURM_DIR:-/tmp/ci-slurm}
log() { printf '[slurm-down] %s\n' "$*" >&2; }

alive() {
	local pid=${1:-} name=$2
	[[ $pid =~ ^[0-9]+$ && -r /proc/$pid/status ]] || return 1
	grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 1
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]
}

# Running jobs would be orphaned by a dead controller: cancel them while slurmctld still answers (only when the
# controller is the one this script is about to stop).
if command -v squeue >/dev/null && [[ -f $DIR/started/slurmctld.pid ]] &&
	alive "$(tr -dc '0-9' <"$DIR/started/slurmctld.pid")" slurmctld; then
	jobs=$(timeout 5 squeue -h -o %i 2>/dev/null || true)
	if [[ -n $jobs ]]; then
		log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
		# shellcheck disable=SC2086
		timeout 5 scancel $jobs 2>/dev/null || true
	fi
fi

status=0
for name in slurmd slurmctld munged; do
	rec=$DIR/started/$name.pid
	[[ -f $rec ]] || continue
	pid=$(tr -dc '0-9' <"$rec")
	if ! alive "$pid" "$name"; then
		log "$name (pid ${pid:-?}) is not running"
		rm -f "$rec"
		continue
	fi
	log "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		alive "$pid" "$name" || break
		sleep 0.1
	done
	if alive "$pid" "$name"; then
		log "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.5
	fi
	if alive "$pid" "$name"; then
		log "ERROR: $name (pid $pid) is still running"
		status=1
	else
		rm -f "$rec"
	fi
done
exit $status

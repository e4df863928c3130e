#!/usr/bin/env bash
# Start a real one-node SLURM cluster on this host (CI, or a developer machine where you are root).
#
# Idempotent: daemons that are already healthy are left alone (a second run takes ~0.1 s). Stale pid files and a
# stale munge socket left by a crash or `kill -9` are detected (a pid counts as alive only if /proc/PID/comm is the
# daemon's name and the process is not a zombie) and the daemon is started again. The PIDs of the daemons this
# script starts are recorded in $CI_SLURM_DIR/started/ so that scripts/ci/slurm-down.sh stops exactly those.
#
# Steps: apt-get install (only if a binary is missing) -> munge key + munged -> /etc/slurm/slurm.conf for this
# host -> slurmctld -> slurmd -> wait until the node is usable. See ../shared/reference/slurm.md for why each line
# of the config is there.
#
# Environment:
#   CI_SLURM_DIR        state, spool, logs, pid files (default /tmp/ci-slurm)
#   CI_SLURM_CPUS       CPUs the node advertises (default 4, so `sbatch -n 4` fits without --overcommit on 2 cores)
#   CI_SLURM_PARTITION  partition name (default ci)
#   CI_SLURM_NO_INSTALL set to 1 to never run apt-get (exit 3 if SLURM is not installed)
#   CI_SLURM_FORCE_CONF set to 1 to overwrite a /etc/slurm/slurm.conf that this script did not write
#
# Not root: exit 0 if a running cluster already takes jobs, else 3.
#
# Exit codes: 0 the cluster is up; 3 SLURM cannot be provided here (not root, no apt-get, install failed);
#             1 anything else (a daemon did not start, the node never became usable; logs are printed).
set -euo pipefail

DIR=${CI_SLURM_DIR:-/tmp/ci-slurm}
CPUS=${CI_SLURM_CPUS:-4}
PARTITION=${CI_SLURM_PARTITION:-ci}
CONF=/etc/slurm/slurm.conf # Debian's default path: no SLURM_CONF needed in any shell or job
MARKER="# written by sciml scripts/ci/slurm-up.sh"
MUNGE_PID=/run/munge/munged.pid
HOST=$(hostname -s)
T0=${EPOCHREALTIME/./}

log() {
	local us=$((${EPOCHREALTIME/./} - T0))
	printf '[slurm-up %d.%02ds] %s\n' $((us / 1000000)) $((us % 1000000 / 10000)) "$*" >&2
}
die() {
	local code=$1
	shift
	log "ERROR: $*"
	exit "$code"
}

# alive PID NAME: the process exists, is not a zombie and is really NAME (guards against PID reuse).
alive() {
	local pid=${1:-} name=$2
	[[ $pid =~ ^[0-9]+$ && -r /proc/$pid/status ]] || return 1
	grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 1
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]
}
pid_of() { [[ -r $1 ]] && tr -dc '0-9' <"$1" || true; }

# wait_pidfile FILE NAME SECONDS: until FILE names a live NAME process.
wait_pidfile() {
	local file=$1 name=$2 n=$(($3 * 10))
	for ((i = 0; i < n; i++)); do
		alive "$(pid_of "$file")" "$name" && return 0
		sleep 0.1
	done
	return 1
}

record() { # NAME PID: this script started it, so slurm-down.sh may stop it
	mkdir -p "$DIR/started"
	echo "$2" >"$DIR/started/$1.pid"
}

show_logs() {
	for f in "$DIR"/log/*.log; do
		[[ -f $f ]] || continue
		echo "----- tail $f" >&2
		tail -n 20 "$f" >&2
	done
}

# ---------------------------------------------------------------- not root: use a running cluster or give up
if [[ $(id -u) != 0 ]]; then
	if command -v scontrol >/dev/null && scontrol ping 2>/dev/null | grep -q 'is UP' &&
		[[ $(sinfo -h -o %t 2>/dev/null | head -n 1) =~ ^(idle|mix|alloc|comp) ]]; then
		log "not root, but a SLURM cluster is up and takes jobs: using it as it is"
		exit 0
	fi
	die 3 "installing and starting SLURM needs root (this is uid $(id -u)) and no running cluster answers"
fi

# ---------------------------------------------------------------- serialise concurrent callers (test + CI script)
mkdir -p "$DIR"/{state,spool,log,started}
# fd 9 must not leak into the daemons (they would hold the lock for ever): they are started with 9>&-
exec 9>"$DIR/up.lock"
if command -v flock >/dev/null; then flock -w 120 9 || die 1 "another slurm-up.sh holds $DIR/up.lock"; fi

# ---------------------------------------------------------------- packages
need_install=0
for b in munged mungekey slurmctld slurmd sbatch srun sinfo scontrol; do
	command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || need_install=1
done
if ((need_install)); then
	[[ ${CI_SLURM_NO_INSTALL:-0} == 1 ]] && die 3 "SLURM/munge are not installed and CI_SLURM_NO_INSTALL=1"
	command -v apt-get >/dev/null || die 3 "SLURM/munge are not installed and there is no apt-get"
	log "installing slurmd slurmctld slurm-client munge (apt-get, log in $DIR/log/apt.log)"
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get update -q && apt-get install -y -q --no-install-recommends slurmd slurmctld slurm-client munge; } \
		>"$DIR/log/apt.log" 2>&1; then
		tail -n 20 "$DIR/log/apt.log" >&2
		die 3 "apt-get install of SLURM failed (see $DIR/log/apt.log)"
	fi
fi
export PATH=$PATH:/usr/sbin:/sbin

# ---------------------------------------------------------------- munge
# apt never starts daemons here (policy-rc.d exits 101, no systemd) and nothing creates /run/munge.
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
	log "creating /etc/munge/munge.key"
	mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
	log "munged is running"
else
	old=$(pid_of "$MUNGE_PID")
	if alive "$old" munged; then # running but not answering: restart it
		log "munged (pid $old) does not answer; stopping it"
		kill "$old" 2>/dev/null || true
		sleep 0.5
		alive "$old" munged && kill -9 "$old" 2>/dev/null || true
	fi
	rm -f "$MUNGE_PID"
	log "starting munged"
	# --force: start even if a socket file from a killed munged is still there
	runuser -u munge -- /usr/sbin/munged --force 9>&- || die 1 "munged did not start"
	wait_pidfile "$MUNGE_PID" munged 10 || die 1 "munged wrote no pid file"
	for ((i = 0; i < 50; i++)); do
		munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
		sleep 0.1
	done
	munge -n | unmunge >/dev/null || die 1 "munge credentials do not round-trip (munge -n | unmunge)"
	record munged "$(pid_of "$MUNGE_PID")"
fi

# ---------------------------------------------------------------- slurm.conf for THIS host
new_conf=$(
	cat <<CONF
$MARKER for host $HOST (CPUs=$CPUS). Do not edit: rerun the script.
ClusterName=ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# the node may advertise more CPUs than it has cores (4 ranks on a 2-core CI machine); without this it is INVAL
SlurmdParameters=config_overrides
# an impossible request fails at once instead of pending forever (a CI run would hang)
EnforcePartLimits=ALL
ReturnToService=2
# sbatch --wait polls every 2 s only while its poll interval is below MinJobAge/2 (else 8 s, then 32 s: a 5 s job
# took 42 s to report); finished jobs leave slurmctld's memory after 4 s, which CI does not need longer
MinJobAge=4
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
)
conf_changed=0
if [[ ! -f $CONF ]] || [[ $(cat "$CONF") != "$new_conf" ]]; then
	if [[ -f $CONF ]] && ! head -n 1 "$CONF" | grep -qF "$MARKER" && [[ ${CI_SLURM_FORCE_CONF:-0} != 1 ]]; then
		die 1 "$CONF exists and was not written by this script; refusing to overwrite it (CI_SLURM_FORCE_CONF=1 to force)"
	fi
	mkdir -p "$(dirname "$CONF")"
	printf '%s\n' "$new_conf" >"$CONF.tmp.$$"
	mv -f "$CONF.tmp.$$" "$CONF"
	conf_changed=1
	log "wrote $CONF (host $HOST, CPUs=$CPUS, partition $PARTITION)"
fi

# ---------------------------------------------------------------- slurmctld, then slurmd
start_daemon() { # NAME PIDFILE
	local name=$1 pidfile=$2 pid
	pid=$(pid_of "$pidfile")
	if alive "$pid" "$name"; then
		if ((conf_changed)); then
			log "config changed: restarting $name (pid $pid)"
			kill "$pid" 2>/dev/null || true
			for ((i = 0; i < 100; i++)); do alive "$pid" "$name" || break; sleep 0.1; done
			alive "$pid" "$name" && kill -9 "$pid" 2>/dev/null || true
		else
			log "$name is running (pid $pid)"
			return 0
		fi
	fi
	rm -f "$pidfile" # stale: a killed daemon leaves it behind
	log "starting $name"
	"/usr/sbin/$name" 9>&- || {
		show_logs
		die 1 "$name did not start"
	}
	wait_pidfile "$pidfile" "$name" 15 || {
		show_logs
		die 1 "$name wrote no live pid to $pidfile"
	}
	record "$name" "$(pid_of "$pidfile")"
}
start_daemon slurmctld "$DIR/slurmctld.pid"
for ((i = 0; i < 100; i++)); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.1; done
start_daemon slurmd "$DIR/slurmd.pid"

# ---------------------------------------------------------------- wait until the node takes jobs
state=""
for ((i = 0; i < 300; i++)); do
	state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n 1 | tr -d '*~#!%$@^-' || true)
	case $state in
	idle | mix | alloc | comp) break ;;
	down | drain | drng | fail)
		# ReturnToService=2 normally brings it back; a crash can leave it down with an old reason
		((i % 20 == 10)) && scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
		;;
	esac
	sleep 0.1
done
case $state in
idle | mix | alloc | comp) ;;
*)
	sinfo -N -l >&2 || true
	scontrol show node "$HOST" >&2 || true
	show_logs
	die 1 "node $HOST is not usable after 30 s (state '${state:-none}')"
	;;
esac
log "cluster up: node $HOST is $state; partition $PARTITION; logs in $DIR/log"

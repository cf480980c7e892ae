#!/usr/bin/env bash
# Starts N copies of a command as the ranks of one data-parallel job on this
# machine, with the environment `torchrun --standalone --nproc_per_node N`
# gives its workers: RANK and LOCAL_RANK 0..N-1, WORLD_SIZE and
# LOCAL_WORLD_SIZE N, MASTER_ADDR=127.0.0.1 and MASTER_PORT (kept when set,
# else a port nothing listens on). ringfeed's loaders take their rank, world
# size and share of the CPUs from these.
#
#   usage: scripts/launch-ranks.sh [--log-dir DIR] [--grace SECONDS] N -- COMMAND [ARGS...]
#
# Each rank's stdout and stderr lines are passed on prefixed with
# "[rank R] ", or with --log-dir written to DIR/rank-R.log. The launcher
# waits for every rank. When a rank fails, the others are stopped (SIGTERM,
# then SIGKILL 10 s later), after --grace SECONDS (default 0) during which
# they may still end on their own, and the launcher exits with the status of
# the first rank that failed (0 when none did). Ctrl-C (SIGINT), SIGTERM and
# SIGHUP stop every rank the same way at once (a second one: SIGKILL), and
# the launcher exits 128 + the signal's number once they are gone. Each rank
# runs in a process group of its own, so whatever it started is stopped with
# it. Exit status 2: a usage error.
set -uo pipefail

me=launch-ranks
die() {
  echo "$me: $*" >&2
  exit 2
}
# `wait -n -p` below.
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501)); then die "needs bash 5.1 or newer"; fi
usage() {
  echo "usage: $0 [--log-dir DIR] [--grace SECONDS] N -- COMMAND [ARGS...]" >&2
  exit 2
}

log_dir=
grace=0
while (($#)); do
  case $1 in
    --log-dir)
      (($# >= 2)) || usage
      log_dir=$2
      shift 2
      ;;
    --grace)
      (($# >= 2)) || usage
      grace=$2
      shift 2
      ;;
    -h | --help) usage ;;
    -*) die "unknown option '$1'" ;;
    *) break ;;
  esac
done
if (($# < 3)) || [[ $2 != -- ]]; then usage; fi
n=$1
shift 2
[[ $n =~ ^[1-9][0-9]{0,3}$ ]] || die "N must be an integer from 1 to 9999, not '$n'"
[[ $grace =~ ^[0-9]+$ ]] || die "--grace must be a whole number of seconds, not '$grace'"
if [[ -n $log_dir ]]; then
  mkdir -p "$log_dir" || die "cannot create $log_dir"
fi

# A port nothing accepts connections on (bash connects through /dev/tcp).
free_port() {
  local port _
  for _ in {1..100}; do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}
port=${MASTER_PORT:-$(free_port)} || die "found no free port for MASTER_PORT; set MASTER_PORT"

# Copies lines from stdin to stdout, each prefixed with "[rank $1] ".
prefix() {
  local line
  while IFS= read -r line || [[ -n $line ]]; do
    printf '[rank %s] %s\n' "$1" "$line"
  done
}

# Runs rank $1 of the job: the command in "${@:2}".
run_rank() {
  local rank=$1
  shift
  # Outlive a signal to the group until the command has ended (a trap, not
  # an ignored signal, which the command would inherit): the launcher sees
  # the rank end when its command does, and can then escalate.
  trap : INT TERM HUP
  export RANK=$rank LOCAL_RANK=$rank WORLD_SIZE=$n LOCAL_WORLD_SIZE=$n
  export MASTER_ADDR=127.0.0.1 MASTER_PORT=$port
  if [[ -n $log_dir ]]; then
    { "$@" </dev/null >"$log_dir/rank-$rank.log" 2>&1; } 2>/dev/null
    return
  fi
  local status err
  # stderr through fd 4 to a prefix of its own; this shell's own notices
  # ("Terminated") to /dev/null.
  exec 4> >(prefix "$rank" >&2)
  err=$!
  { "$@" </dev/null 2>&4 4>&- | prefix "$rank" 4>&-; } 2>/dev/null
  status=${PIPESTATUS[0]}
  exec 4>&-
  wait "$err" # the stderr prefix's last lines, before the rank counts as ended
  return "$status"
}

declare -A live=() # pid (= process group) of each running rank -> its rank
watchdog=          # the background process that stops the ranks, if any
signal_status=
first_status=

# Stops the running ranks: SIGTERM after $1 seconds, SIGKILL 10 s later.
# A later call replaces an earlier one's schedule.
stop_ranks() {
  local delay=$1 groups=() pid
  for pid in "${!live[@]}"; do groups+=("-$pid"); done
  ((${#groups[@]})) || return 0
  if [[ -n $watchdog ]]; then
    kill -- "-$watchdog" 2>/dev/null
  fi
  if ((delay == 0)); then
    kill -TERM -- "${groups[@]}" 2>/dev/null
  fi
  set -m # a process group of its own, so that its sleep goes with it
  (
    if ((delay > 0)); then
      sleep "$delay"
      kill -TERM -- "${groups[@]}" 2>/dev/null
    fi
    sleep 10
    kill -KILL -- "${groups[@]}" 2>/dev/null
  ) &
  watchdog=$!
  set +m
}

# shellcheck disable=SC2317 # (called by the traps below)
on_signal() {
  local pid
  if [[ -n $signal_status ]]; then
    for pid in "${!live[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
    return
  fi
  signal_status=$((128 + $1))
  echo "$me: signal $1: stopping every rank" >&2
  stop_ranks 0
}

# Whatever ends the launcher, no rank or watchdog outlives it.
# shellcheck disable=SC2317 # (called by the trap below)
cleanup() {
  local pid
  for pid in "${!live[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
  if [[ -n $watchdog ]]; then
    kill -- "-$watchdog" 2>/dev/null
  fi
}

trap 'on_signal 2' INT
trap 'on_signal 15' TERM
trap 'on_signal 1' HUP
trap cleanup EXIT

# Job control while starting them: each rank gets a process group of its
# own, which a signal reaches as a whole, and a Ctrl-C on the terminal
# reaches only the launcher, which stops the ranks itself. Off again after
# (no job notices; the exit statuses stay for `wait`).
set -m
for ((r = 0; r < n && ${#signal_status} == 0; r++)); do
  run_rank "$r" "$@" &
  live[$!]=$r
done
set +m
# A signal while they were starting: stop the ranks started since as well.
if [[ -n $signal_status ]]; then stop_ranks 0; fi

# Rank $1 (pid $2) ended with status $3.
ended() {
  unset "live[$2]"
  if (($3 != 0)) && [[ -z $first_status && -z $signal_status ]]; then
    first_status=$3
    echo "$me: rank $1 exited with status $3; stopping the other ranks" >&2
    stop_ranks "$grace"
  fi
}

while ((${#live[@]})); do
  finished=
  wait -n -p finished "${!live[@]}" 2>/dev/null
  status=$?
  if [[ -n ${finished:-} ]]; then
    ended "${live[$finished]}" "$finished" "$status"
    continue
  fi
  # A trapped signal interrupted the wait, or a rank killed by a signal
  # left the job table before `wait -n` saw it: its status is still kept
  # for a `wait` on its pid.
  for pid in "${!live[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"
      ended "${live[$pid]}" "$pid" "$?"
    fi
  done
done

if [[ -n $watchdog ]]; then
  kill -- "-$watchdog" 2>/dev/null
  wait "$watchdog" 2>/dev/null
  watchdog=
fi
exit "${signal_status:-${first_status:-0}}"

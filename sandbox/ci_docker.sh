#!/usr/bin/env bash
# Bring up a Docker engine for the test suite on a fresh Debian machine, and take down only our own.
#
#   sandbox/ci_docker.sh start       # install docker.io + debootstrap if absent, start dockerd, build the
#                                    # image; prints the PID of a dockerd it started (nothing otherwise)
#   sandbox/ci_docker.sh stop [PID]  # stop the dockerd *we* started (the PID in our PID file; with PID,
#                                    # only if it is that one), never anyone else's
#
# Never fails the caller: when Docker cannot be made to run (not root, no cgroups, apt-get fails, the
# daemon does not answer) it says why on stderr and exits 0, and the docker tests skip with a reason.
# A daemon that is already answering (a developer's own) is used as it is and never stopped.
#
# Why these dockerd flags: CI machines have no bridge/iptables set-up we may touch, and our containers
# run with network_mode="none" anyway, so dockerd needs no networking of its own.
set -uo pipefail

STATE_DIR="${EVOFORGE_DOCKER_STATE:-/tmp/evoforge-dockerd}"
PID_FILE="$STATE_DIR/dockerd.pid"
LOG_FILE="$STATE_DIR/dockerd.log"
IMAGE="${EVOFORGE_DOCKER_IMAGE:-evoforge-sandbox:latest}"
HERE="$(cd "$(dirname "$0")" && pwd)"
WAIT_S=60
STARTED=""

say() { echo "ci_docker: $*" >&2; }

answers() { docker info >/dev/null 2>&1; }

install_if_absent() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    say "not root: cannot apt-get install ${missing[*]}; docker tests will skip"
    return 1
  fi
  say "installing ${missing[*]} (apt-get)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
      >"$STATE_DIR/apt.log" 2>&1; then
    say "apt-get install ${missing[*]} failed (see $STATE_DIR/apt.log); docker tests will skip"
    return 1
  fi
}

start() {
  mkdir -p "$STATE_DIR"
  if answers; then
    say "a Docker engine already answers; using it"
  else
    if [ "$(id -u)" != 0 ]; then
      say "no Docker engine answers and we are not root (cannot start dockerd); docker tests will skip"
      return 0
    fi
    install_if_absent || return 0
    if [ ! -d /sys/fs/cgroup ] || [ -z "$(ls -A /sys/fs/cgroup 2>/dev/null)" ]; then
      say "no cgroup file system at /sys/fs/cgroup: dockerd cannot run; docker tests will skip"
      return 0
    fi
    say "starting dockerd (log: $LOG_FILE)"
    # setsid: our own session, so a Ctrl-C or the end of the calling shell does not hit it half-way.
    setsid dockerd --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
      --pidfile "$STATE_DIR/dockerd.own.pid" >"$LOG_FILE" 2>&1 < /dev/null &
    echo $! >"$PID_FILE"
    STARTED=$!
    for _ in $(seq 1 "$WAIT_S"); do
      answers && break
      if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
        say "dockerd exited at start; its log ends with:"; tail -n 15 "$LOG_FILE" >&2
        rm -f "$PID_FILE"; return 0
      fi
      sleep 1
    done
    if ! answers; then
      say "dockerd did not answer within ${WAIT_S} s; stopping it; docker tests will skip"
      stop; return 0
    fi
  fi
  if ! EVOFORGE_DOCKER_IMAGE="$IMAGE" bash "$HERE/build_image.sh" >&2; then
    say "building $IMAGE failed; docker tests will skip"
  fi
  [ -n "$STARTED" ] && echo "$STARTED"
  return 0
}

stop() {
  [ -f "$PID_FILE" ] || return 0
  local pid; pid="$(cat "$PID_FILE")"
  if [ -n "${1:-}" ] && [ "$1" != "$pid" ]; then
    return 0  # not the one the caller started: someone else's run owns it now
  fi
  # Only a live dockerd: a stale PID file must never make us kill a reused PID.
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q '^dockerd '; then
    say "stopping our dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$PID_FILE"
  return 0
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start|stop [PID]" >&2; exit 2 ;;
esac
exit 0

#!/usr/bin/env bash
# The real server's services: nginx on port 80 answering "NAME" (and /stream, a slow 1 MB body for
# long-lived connections: 256 kB/s, or /stream?rate=100k), a UDP echo on port 9000 answering
# "NAME:data" and a TCP byte counter on port 9001 answering "NAME:bytes", each bound to the addresses
# given so replies leave from the address the client asked.
# usage: services.sh NAME STATE_DIR ADDR...
set -euo pipefail
name=${1:?name} state=${2:?state directory}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$state/www" "$state/logs"
head -c 1048576 /dev/zero | tr '\0' 'x' > "$state/www/stream"
listen=""
for a in "$@"; do
	case $a in *:*) listen="$listen listen [$a]:80;" ;; *) listen="$listen listen $a:80;" ;; esac
done
cat > "$state/nginx.conf" <<CONF
worker_processes 1;
pid $state/nginx.pid;
error_log $state/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
  client_body_temp_path $state/tmp;
  map \$arg_rate \$stream_rate { default 256k; "~^[0-9]+k\$" \$arg_rate; }
  server {
    $listen
    add_header X-Server $name always;
    location = / { default_type text/plain; return 200 "$name\n"; }
    location = /stream { root $state/www; limit_rate \$stream_rate; limit_rate_after 0; }
  }
}
CONF
mkdir -p "$state/tmp"

# stop PIDFILE: end the process a previous run started, and wait until it is gone (it holds the ports)
stop() {
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 0
	kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
}
stop "$state/nginx.pid"
nginx -c "$state/nginx.conf" -e "$state/logs/error.log"
stop "$state/echo.pid"
python3 "$here/udp_echo.py" "$name" 9000 "$@" </dev/null >"$state/logs/echo.log" 2>&1 &
echo $! > "$state/echo.pid"
stop "$state/count.pid"
python3 "$here/tcp_count.py" "$name" 9001 "$@" </dev/null >"$state/logs/count.log" 2>&1 &
echo $! > "$state/count.pid"
sleep 0.2
kill -0 "$(cat "$state/echo.pid")" 2>/dev/null || { echo "udp echo did not start: $(cat "$state/logs/echo.log")" >&2; exit 1; }
kill -0 "$(cat "$state/count.pid")" 2>/dev/null || { echo "tcp count did not start: $(cat "$state/logs/count.log")" >&2; exit 1; }

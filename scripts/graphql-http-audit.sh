#!/usr/bin/env bash
# Runs the graphql-http server audits (GraphQL over HTTP conformance) against a freshly started
# Consentry server. Builds nothing: pass the binary (default: target/debug/consentry).
#
#   cargo build -p api --bin consentry && scripts/graphql-http-audit.sh [path/to/consentry]
#
# Starts `consentry serve` on a throw-away SQLite database and a free loopback port, waits for
# /readyz, mints a viewer token (the audits query `__type`, and Consentry allows introspection
# only to authenticated callers), runs scripts/graphql-http-audit/audit.mjs, then stops the
# server and deletes the database. Exits with the audit's status: 0 when every MUST and SHOULD
# audit passes, 1 when one fails, 2 when the audit cannot run.
#
# Environment: AUDIT_ANONYMOUS=1 runs the audits without a token (informational: audits that
# introspect then fail by design); READY_TIMEOUT_SECONDS (default 60) bounds the wait for /readyz.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
audit_dir="$repo_root/scripts/graphql-http-audit"
binary="${1:-$repo_root/target/debug/consentry}"
ready_timeout="${READY_TIMEOUT_SECONDS:-60}"

if [[ ! -x "$binary" ]]; then
  echo "graphql-http-audit: no executable consentry binary at $binary (build it with: cargo build -p api --bin consentry)" >&2
  exit 2
fi
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"
for tool in node npm curl; do
  command -v "$tool" >/dev/null || { echo "graphql-http-audit: $tool is required" >&2; exit 2; }
done

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/consentry-graphql-http-audit.XXXXXX")"
server_pid=""
cleanup() {
  local status=$?
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    # Graceful shutdown first; force it if the server lingers.
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback port: bind port 0, read what the kernel picked, release it.
port="$(node -e '
  const server = require("net").createServer();
  server.listen(0, "127.0.0.1", () => { console.log(server.address().port); server.close(); });
')"

export DATABASE_URL="sqlite://$work_dir/consentry.db?mode=rwc"
export CONSENTRY_LISTEN="127.0.0.1:$port"
export CONSENTRY_PUBLIC_URL="http://127.0.0.1:$port"
base_url="http://127.0.0.1:$port"
server_log="$work_dir/server.log"

# The audit's dependencies (package-lock.json pins them), installed before the server starts.
if [[ ! -d "$audit_dir/node_modules" ]]; then
  (cd "$audit_dir" && npm ci --no-audit --no-fund)
fi

token=""
if [[ "${AUDIT_ANONYMOUS:-0}" != "1" ]]; then
  # Before the server starts: this creates the database, runs the migrations and writes the
  # HS256 secret beside the database, which the server then reads.
  token="$("$binary" token --msp audit --role viewer --database-url "$DATABASE_URL" 2>"$work_dir/token.log")" || {
    echo "graphql-http-audit: consentry token failed:" >&2
    cat "$work_dir/token.log" >&2
    exit 2
  }
fi

"$binary" serve >"$server_log" 2>&1 &
server_pid=$!

echo "graphql-http-audit: waiting for $base_url/readyz (pid $server_pid, at most ${ready_timeout}s)"
deadline=$((SECONDS + ready_timeout))
until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base_url/readyz" || true)" == "200" ]]; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "graphql-http-audit: consentry exited before it was ready; its log:" >&2
    cat "$server_log" >&2
    exit 2
  fi
  if ((SECONDS >= deadline)); then
    echo "graphql-http-audit: /readyz did not answer 200 within ${ready_timeout}s; server log:" >&2
    cat "$server_log" >&2
    exit 2
  fi
  sleep 0.2
done

status=0
AUDIT_TOKEN="$token" node "$audit_dir/audit.mjs" "$base_url/graphql" || status=$?
if ((status == 2)); then
  echo "graphql-http-audit: server log:" >&2
  cat "$server_log" >&2
fi
exit "$status"

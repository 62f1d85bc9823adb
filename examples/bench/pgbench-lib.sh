# Sourced by examples/bench/retention-v7.sh and retention-live.sh: a fresh database, pgbench
# scripts timed in interleaved runs, medians. The caller sets ORDERS, RUNS, SECS, PGURL, DB.
set -euo pipefail
RUNS=${RUNS:-5}
SECS=${SECS:-4}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
declare -A ms

fresh_db() {
    psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" 2>/dev/null
}

# time_scripts NAME...: runs $WORK/NAME.sql for SECS seconds each, all of them once per run,
# RUNS times (so a slower minute of a shared machine hits every script alike); one session,
# extended protocol with unnamed statements, as orderctl sends them. Latencies go to ms[NAME].
time_scripts() {
    local run s v
    for run in $(seq 1 "$RUNS"); do
        for s in "$@"; do
            v=$(pgbench -n -M extended -T "$SECS" -f "$WORK/$s.sql" "$PGURL/$DB" 2>/dev/null | awk '/latency average/ {print $4}')
            ms[$s]="${ms[$s]:-} $v"
        done
    done
}

# median NAME: the median latency of ms[NAME], in ms.
median() { tr ' ' '\n' <<<"${ms[$1]}" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# row LABEL FLAT PARTED SUBTRACT: one table row, both latencies less SUBTRACT and their ratio.
row() {
    awk -v st="$1" -v f="$(median "$2")" -v p="$(median "$3")" -v b="$4" \
        'BEGIN { printf "| %s | %.3f ms | %.3f ms (%.2f) |\n", st, f - b, p - b, (p - b) / (f - b) }'
}

drop_db() {
    [ -n "${KEEP:-}" ] || psql -q "$PGURL/postgres" -c "DROP DATABASE $DB"
}

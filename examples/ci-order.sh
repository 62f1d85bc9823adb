#!/usr/bin/env bash
# Create one order, wait until it is final, and branch on the outcome: what a CI job or a
# shop's script does. Usage:
#
#   DATABASE_URL=postgres://... ORDERCTL_TENANT=alsham examples/ci-order.sh USER PACKAGE PLAYER [TIMEOUT]
#
# Environment: ORDERCTL (the binary, default `orderctl`), DATABASE_URL, ORDERCTL_TENANT, and
# any ORDERCTL_* setting (e.g. ORDERCTL_FIRST_CHECK=5s for a quick first status check).
# Exit: 0 approved (the PIN is printed), 10 rejected and refunded, 9 still not final after
# TIMEOUT (an operator decides: `orderctl inspect N`), anything else is orderctl's own exit code
# (see `man orderctl`: 3 not found, 5 refused e.g. insufficient balance, 6 database down...).
set -uo pipefail

ORDERCTL=${ORDERCTL:-orderctl}
if [ $# -lt 3 ]; then
    echo "usage: $0 USER PACKAGE PLAYER [TIMEOUT]" >&2
    exit 2
fi
user=$1 package=$2 player=$3 timeout=${4:-10m}

# Read one top-level field of the JSON object on stdin (no jq needed).
field() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print("" if v is None else v)' "$1"
    else
        # Pretty-printed JSON from orderctl: one field per line, top-level fields indented 2.
        sed -n "s/^  \"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" | head -n 1 | sed 's/^null$//'
    fi
}

created=$("$ORDERCTL" create --output json --user "$user" --package "$package" --player "$player")
code=$?
if [ $code -ne 0 ]; then
    echo "ci-order: create failed (exit $code); see the error above" >&2
    exit $code
fi
number=$(printf '%s' "$created" | field number)
echo "ci-order: order $number created ($(printf '%s' "$created" | field status) / $(printf '%s' "$created" | field external_status))" >&2

result=$("$ORDERCTL" poll "$number" --wait --timeout "$timeout" --output json)
code=$?
case $code in
    0)
        status=$(printf '%s' "$result" | field status)
        case $status in
            approved)
                echo "ci-order: order $number approved"
                echo "pin: $(printf '%s' "$result" | field pin_code)"
                exit 0
                ;;
            rejected)
                echo "ci-order: order $number rejected: $(printf '%s' "$result" | field last_message); refunded $(printf '%s' "$result" | field refunded)"
                exit 10
                ;;
            *)
                echo "ci-order: order $number ended the wait as $status; see orderctl inspect $number" >&2
                exit 1
                ;;
        esac
        ;;
    9)
        echo "ci-order: order $number is not final after $timeout; an operator decides: orderctl inspect $number" >&2
        exit 9
        ;;
    *)
        echo "ci-order: waiting for order $number failed (exit $code); see the error above" >&2
        exit $code
        ;;
esac

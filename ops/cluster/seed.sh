#!/bin/sh
# Seed the local cluster's users, idempotently: alice and bob (password demo) linked to the
# simulator accounts DEMO-ALICE / DEMO-BOB, admin (password admin). An existing user keeps its
# password; its broker link is set again (the same keys).
# Usage: ops/cluster/seed.sh [ENV_FILE]   (default ops/cluster/cluster.env; run from the repo root)
set -eu
ENV_FILE=${1:-ops/cluster/cluster.env}
PY=${PY:-.venv/bin/python}
set -a
. "$ENV_FILE"
set +a

add() {  # add NAME PASSWORD [users add options]: create unless it exists
    name=$1 password=$2
    shift 2
    if out=$(printf '%s\n' "$password" | "$PY" server.py users add "$name" --password-stdin "$@" 2>&1); then
        echo "$out"
    elif echo "$out" | grep -q "already exists"; then
        echo "$name exists"
    else
        echo "$out" >&2
        exit 1
    fi
}

for name in alice bob; do
    key="DEMO-$(echo "$name" | tr a-z A-Z)"
    add "$name" demo
    "$PY" server.py users link "$name" --alpaca-key "$key" --alpaca-secret "demo-$name-secret"
done
add admin admin --admin

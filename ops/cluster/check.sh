#!/bin/sh
# Check that the local cluster's PostgreSQL and Redis answer, and create its database if missing.
# Usage: ops/cluster/check.sh [ENV_FILE]   (default ops/cluster/cluster.env; run from the repo root)
# Prints one line naming the fix and exits 1 when a service does not answer.
set -eu
ENV_FILE=${1:-ops/cluster/cluster.env}
PY=${PY:-.venv/bin/python}
set -a
. "$ENV_FILE"
set +a
exec "$PY" - <<'PYEOF'
import os, sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

db_url, redis_url = os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
try:
    redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
except redis.RedisError as exc:
    sys.exit(f"Redis does not answer at {redis_url} ({exc}): start it (`service redis-server start`) or set REDIS_URL in ops/cluster/cluster.env")
parts = urlsplit(db_url)
name = parts.path.lstrip("/")
admin_url = urlunsplit(parts._replace(path="/postgres"))
try:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created PostgreSQL database {name}")
except psycopg.Error as exc:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    sys.exit(f"PostgreSQL does not answer at {admin_url} ({first}): start it (`service postgresql start`) or set DATABASE_URL in ops/cluster/cluster.env")
print(f"Redis {redis_url} and PostgreSQL database {name} answer")
PYEOF

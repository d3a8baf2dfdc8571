#!/bin/sh
# Read your own writes through lagdns with libpq (psql): insert a note on the primary,
# take the WAL position after the commit on the same session, and read the note back
# from lsn-X-Y.read.db.internal: a replica that has replayed that position, else the
# primary. Everything but the host comes from libpq's environment (PGPORT, PGUSER,
# PGDATABASE, PGPASSWORD, ...). Needs
#   CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL);
# Prints `id|body|in_recovery|server address`; exits non-zero if the note is missing.
# tests/it/apps_netns.rs runs this very file.
#
#   sh examples/read_your_writes.sh [BODY]
set -eu

# One session: the INSERT commits (psql autocommits), then the name for its position.
# shellcheck disable=SC2046 # two words on purpose: the id and the name
set -- $(psql "host=write.db.internal target_session_attrs=read-write" \
    -X -A -t -q -v ON_ERROR_STOP=1 -v body="${1:-hello}" <<'SQL'
INSERT INTO notes (body) VALUES (:'body') RETURNING id;
SELECT 'lsn-' || replace(pg_current_wal_insert_lsn()::text, '/', '-') || '.read.db.internal';
SQL
)
id=$1 name=$2

# A new connection: libpq resolves the name (TTL 0, so it reaches lagdns).
row=$(psql "host=$name" -X -A -t -v ON_ERROR_STOP=1 \
    -c "SELECT id, body, pg_is_in_recovery(), host(inet_server_addr()) FROM notes WHERE id = $id")
[ -n "$row" ] || { echo "note $id not found on $name" >&2; exit 1; }
echo "$row"

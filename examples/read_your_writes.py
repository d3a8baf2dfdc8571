#!/usr/bin/env python3
"""Read your own writes through lagdns, with psycopg 3.

Each round writes a row on the primary (write.db.internal), takes the WAL position
after the commit on the same session, and reads the row back from a node that has
replayed that position: lsn-X-Y.read.db.internal answers such a replica, else the
primary, the one node sure to have it. The name is new with every write, so it is
resolved per read (TTL 0: every lookup reaches lagdns) and the read goes over a
connection to the address it names, kept open per node: a pool per node, not a pool
per name.

Everything but the host comes from libpq's environment (PGPORT, PGUSER, PGDATABASE,
PGPASSWORD, PGSSLMODE, ...), so the same program runs against `lagdns demo`
(PGPORT=54321 PGUSER=postgres PGDATABASE=postgres) and production. It needs

    CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL);

and prints one JSON line per round and a summary; it exits 1 if a row it wrote was
not there to read. tests/it/apps_netns.rs runs this very file.

    python3 examples/read_your_writes.py [--rounds N] [--pause SECONDS]
"""

import argparse
import json
import socket
import sys
import time

import psycopg

# target_session_attrs: a node that is not (or no longer) the primary is refused,
# never written to, while DNS catches up with a failover.
WRITE = "host=write.db.internal target_session_attrs=read-write"

# The name for "everything this session has committed so far". The insert position
# is past the commit record even when the commit was asynchronous
# (synchronous_commit = off), where pg_current_wal_lsn() can still be before it.
LSN_NAME = (
    "SELECT 'lsn-' || replace(pg_current_wal_insert_lsn()::text, '/', '-')"
    " || '.read.db.internal'"
)


def write_note(conn, body):
    """Inserts a note and returns its id and the name to read it back from."""
    with conn.transaction():
        (note_id,) = conn.execute(
            "INSERT INTO notes (body) VALUES (%s) RETURNING id", (body,)
        ).fetchone()
    # After COMMIT, on the same session.
    (name,) = conn.execute(LSN_NAME).fetchone()
    return note_id, name


def resolve(name):
    """The first address the system resolver gives for name (TTL 0: asks lagdns)."""
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return infos[0][4][0]


def reader(readers, address):
    """An open autocommit connection to the node at address (one per node)."""
    conn = readers.get(address)
    if conn is None or conn.closed:
        # autocommit: every statement sees what the node has replayed by then (an
        # open REPEATABLE READ transaction would keep an older snapshot).
        conn = psycopg.connect(f"hostaddr={address}", autocommit=True)
        readers[address] = conn
    return conn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds between the write and the read")
    args = parser.parse_args()

    summary = {"rounds": 0, "replica": 0, "primary": 0, "missed": 0}
    readers = {}
    with psycopg.connect(WRITE, autocommit=True) as writer:
        for i in range(args.rounds):
            note_id, name = write_note(writer, f"note {i}")
            time.sleep(args.pause)
            address = resolve(name)
            row = reader(readers, address).execute(
                "SELECT body, pg_is_in_recovery(), host(inet_server_addr())"
                " FROM notes WHERE id = %s", (note_id,)
            ).fetchone()
            found = row is not None
            on_replica = bool(row[1]) if found else None
            summary["rounds"] += 1
            summary["missed" if not found else "replica" if on_replica else "primary"] += 1
            print(json.dumps({"id": note_id, "name": name, "address": address,
                              "server": row[2] if found else None,
                              "replica": on_replica, "found": found}), flush=True)
    for conn in readers.values():
        conn.close()
    print(json.dumps({"summary": summary}), flush=True)
    return 1 if summary["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())

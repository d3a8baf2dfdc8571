//! Secrets: a password wrapper whose `Debug`/`Display` print `***`, and where a node's
//! password comes from (`password_file`, else `PGPASSWORD`, else the DSN).

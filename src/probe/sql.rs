//! The probe's SQL: one round trip per probe, one named constant, a comment per column.

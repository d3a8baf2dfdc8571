//! Command-line interface: the commands and their flags.

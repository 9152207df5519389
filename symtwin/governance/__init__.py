"""Data governance: sharing policy and its enforcement, broker and database config, audit log."""

"""Tests for merkle_backup.formats."""

"""Tests for merkle_backup.core."""

"""Where backups live: a local folder or bare tarball, and S3-compatible storage."""

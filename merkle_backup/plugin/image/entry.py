"""The frozen build's entry point (PyInstaller runs a script, not a module's function):
the same ``main`` as the console script ``merkle-backup-velero-plugin``."""

from merkle_backup.plugin.server import main

if __name__ == "__main__":  # PyInstaller runs it as __main__; importing it does nothing
    main()

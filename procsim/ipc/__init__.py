"""System V IPC (ipc/): shared memory segments (shm.py)."""

"""The VFS side of processes (fs/): open file descriptions (file.py), fd
tables (fdtable.py), fs_struct (fs_struct.py), the mount tables of mount
namespaces and the kernel-internal mounts (mount.py), and the syscalls that
change them (syscalls.py)."""

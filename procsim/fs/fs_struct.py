"""fs_struct (include/linux/fs_struct.h): a process's root and working
directory, as paths. Shared by CLONE_FS threads, copied by fork."""

from __future__ import annotations


class FsStruct:
    __slots__ = ("root", "pwd")

    def __init__(self, root: str = "/", pwd: str = "/") -> None:
        self.root, self.pwd = root, pwd

    def copy(self) -> "FsStruct":
        return FsStruct(self.root, self.pwd)

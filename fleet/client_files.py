"""``FleetClient``'s methods on the files of a machine's home (a mixin: ``client.py`` is full):
``machines.readFile``, ``machines.listDir``, ``machines.stat``, ``machines.removeFile``."""

from __future__ import annotations

from contracts import daemon_files as df, gateway_files as gf
from contracts.jsonrpc import new_params
from fleet.client_retry import Calls


class FilesClient:
    async def read_file(
        self: Calls, machine_id: str, path: str, *, encoding: df.Encoding = "utf-8"
    ) -> df.ReadFileResult:
        """A file that fits in one message (FileTooLarge otherwise: ``download`` it)."""
        params = new_params(gf.MachineReadFileParams, machine_id=machine_id, path=path,
                            encoding=encoding)  # fmt: skip
        return await self.call(gf.MACHINES_READ_FILE, params)

    async def list_dir(
        self: Calls,
        machine_id: str,
        path: str = "~",
        *,
        limit: int = 1000,
        after: str | None = None,
    ) -> df.ListDirResult:
        """One page of the directory; ``after``: a previous page's ``next_after``."""
        params = new_params(gf.MachineListDirParams, machine_id=machine_id, path=path,
                            limit=limit, after=after)  # fmt: skip
        return await self.call(gf.MACHINES_LIST_DIR, params)

    async def stat(self: Calls, machine_id: str, path: str) -> df.StatResult:
        params = new_params(gf.MachineStatParams, machine_id=machine_id, path=path)
        return await self.call(gf.MACHINES_STAT, params)

    async def remove_file(
        self: Calls, machine_id: str, path: str, *, recursive: bool = False
    ) -> df.RemoveFileResult:
        params = new_params(gf.MachineRemoveFileParams, machine_id=machine_id, path=path,
                            recursive=recursive)  # fmt: skip
        return await self.call(gf.MACHINES_REMOVE_FILE, params)

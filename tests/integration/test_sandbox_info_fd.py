"""bwrap's info descriptor is closed once, whatever ends its read: a start cancelled while it
read (a provisioner stopping) must not close the number again later, when it names another
descriptor of the process (seen as a machine's token pipe lost, EBADF, at its start)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os

import uvloop

from providers.sandbox.netns import read_child_pid


async def _cancelled_read_then_reused() -> bool:
    """Cancel a read of the info descriptor, let its number be taken again; is that still open
    after a collection?"""
    read, write = os.pipe()
    await _cancel_a_read(read)
    await asyncio.sleep(0.05)  # what the loop closes late, it has closed
    os.close(write)
    taken, other = os.pipe()  # the lowest free numbers: the info descriptor's among them
    try:
        gc.collect()  # the task, its frames and whatever they held
        os.fstat(taken)
        os.fstat(other)
        return True
    except OSError:
        return False
    finally:
        for fd in (taken, other):
            with contextlib.suppress(OSError):
                os.close(fd)


async def _cancel_a_read(info_fd: int) -> None:
    task = asyncio.create_task(read_child_pid(info_fd))
    await asyncio.sleep(0)  # the read has begun
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_a_cancelled_read_closes_the_info_descriptor_once_on_uvloop() -> None:
    """The services' loop: uvloop closed the descriptor of a cancelled connect_read_pipe and
    left its file object open, to close the number again when collected."""
    assert uvloop.run(_cancelled_read_then_reused())


def test_a_cancelled_read_closes_the_info_descriptor_once_on_asyncio() -> None:
    assert asyncio.run(_cancelled_read_then_reused())

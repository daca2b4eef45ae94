"""The syscall filter of a sandboxed machine and of codemode's sandbox: Docker's default.

Docker's default seccomp profile, as it applies to a container without added capabilities,
turned into a deny list: every syscall it refuses (kernel keyrings, bpf, perf, userfaultfd,
modules, mounts, new namespaces, clocks, reboot, the NUMA calls, process_vm_*...) answers
EPERM, as under Docker; ``clone`` with any namespace flag answers EPERM (no nested user, pid or
network namespace: most recent local kernel exploits start with an unprivileged user
namespace); ``clone3``, whose flags a filter cannot read, answers ENOSYS so that the C library
falls back to ``clone``, as Docker does; ``personality`` may not turn on a flag that weakens
the address space (ASLR off, page zero...).
Everything else is allowed (Docker's allow list is every other syscall of the kernel).

Built once per process with libseccomp (``pyseccomp``, ctypes over the system's library) and
handed to bwrap's ``--seccomp`` as a sealed memfd: nothing on disk, nothing to keep in sync.
"""

from __future__ import annotations

import errno
import fcntl
import os

import pyseccomp as seccomp
import structlog

log = structlog.get_logger(__name__)

#: Refused with EPERM (Docker: not in its allow list, or allowed only with a capability that
#: a machine never has: CAP_SYS_ADMIN, _MODULE, _TIME, _BOOT, _RAWIO, _PTRACE for other
#: processes' memory, _NICE for NUMA, _PACCT, _SYSLOG, _CHROOT, _DAC_READ_SEARCH, _BPF,
#: _PERFMON). Names this libseccomp does not know are skipped (logged).
DENIED = (
    "acct", "add_key", "bpf", "chroot", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "fanotify_init", "finit_module", "fsconfig", "fsmount", "fsopen",
    "fspick", "get_kernel_syms", "get_mempolicy", "init_module", "io_uring_enter",
    "io_uring_register", "io_uring_setup", "ioperm", "iopl", "kcmp", "kexec_file_load",
    "kexec_load", "keyctl", "lookup_dcookie", "mbind", "modify_ldt", "mount", "mount_setattr",
    "move_mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
    "open_tree", "perf_event_open", "pidfd_getfd", "pivot_root", "process_madvise",
    "process_vm_readv", "process_vm_writev", "query_module", "quotactl", "quotactl_fd",
    "reboot", "request_key", "set_mempolicy", "setdomainname", "sethostname", "setns",
    "settimeofday", "stime", "swapoff", "swapon", "_sysctl", "sysfs", "syslog", "umount",
    "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vhangup", "vm86", "vm86old",
)  # fmt: skip

#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (Docker's mask).
CLONE_NAMESPACES = 0x7E020000
#: personality(2) flags refused (Docker allows only PER_LINUX, its 32-bit and UNAME26 forms
#: and the query): ADDR_NO_RANDOMIZE, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT, READ_IMPLIES_EXEC,
#: ADDR_LIMIT_32BIT, ADDR_LIMIT_3GB.
WEAKENING = 0x0040000 | 0x0100000 | 0x0200000 | 0x0400000 | 0x0800000 | 0x8000000


def docker_default_bpf() -> bytes:
    """The filter as the classic BPF program bwrap's ``--seccomp`` loads."""
    flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    if seccomp.system_arch() == seccomp.Arch.X86_64:
        # As Docker: 32-bit and x32 programs run, under the same rules (else killed).
        for arch in (seccomp.Arch.X86, seccomp.Arch.X32):
            flt.add_arch(arch)
    eperm = seccomp.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            flt.add_rule(eperm, name)
        except (OSError, ValueError) as exc:  # unknown to this libseccomp or this arch
            log.debug("seccomp.unknown_syscall", syscall=name, error=str(exc))
    for bit in _bits(CLONE_NAMESPACES):  # any one namespace flag, not only all of them
        flt.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, bit, bit))
    flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    _personality(flt, eperm)
    fd = os.memfd_create("fleet-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb", closefd=True) as out:
            flt.export_bpf(out)
        os.lseek(fd, 0, os.SEEK_SET)
        return _read_all(fd)
    finally:
        os.close(fd)


def _personality(flt: seccomp.SyscallFilter, action: int) -> None:
    """personality(x) refused when x turns on a flag that weakens the address space (no ASLR,
    page zero, readable-implies-executable, the legacy layouts), unless x is the query
    (0xffffffff), which has every bit: "flag set and some other bit clear", one rule per
    other bit (libseccomp takes one comparison per argument and rule)."""
    for flag in _bits(WEAKENING):
        for other in _bits(0xFFFFFFFF & ~flag):
            flt.add_rule(action, "personality",
                         seccomp.Arg(0, seccomp.MASKED_EQ, flag | other, flag))  # fmt: skip


def _bits(mask: int) -> list[int]:
    return [1 << i for i in range(32) if mask & (1 << i)]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def filter_fd(program: bytes) -> int:
    """A sealed memfd holding ``program`` at offset 0, inheritable (bwrap reads it to its
    end); the caller closes it once bwrap has started."""
    fd = os.memfd_create("fleet-seccomp", os.MFD_ALLOW_SEALING)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    return fd

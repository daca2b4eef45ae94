"""A script that tries syscalls Docker's default seccomp profile refuses, and a user namespace:
run inside a sandbox, it prints one JSON object of ``name: errno`` (0: the call was allowed).

x86_64 syscall numbers (the suite's hosts); the kernel refuses each of these calls anyway
for a process without capabilities, but with another errno than the filter's EPERM (EINVAL,
EFAULT, ENOSYS...), and ``userfaultfd``/``keyctl`` succeed unfiltered: the filter is what
makes every one EPERM.
"""

PROBE = r"""
import ctypes, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    ctypes.set_errno(0)
    res = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return 0 if res >= 0 else ctypes.get_errno()
out = {
    "keyctl": call(250, 0, -1, 0, 0, 0),           # KEYCTL_GET_KEYRING_ID, thread keyring
    "add_key": call(248, 0, 0, 0, 0, 0),
    "bpf": call(321, 0, 0, 0),
    "perf_event_open": call(298, 0, 0, -1, -1, 0),
    "userfaultfd": call(323, 0),
    "unshare_user": call(272, 0x10000000),         # CLONE_NEWUSER
    "getpid": call(39),                            # allowed: the filter is not all-refusing
}
try:
    done = subprocess.run(["unshare", "-r", "true"], capture_output=True, timeout=20)
    out["unshare -r true"] = done.returncode
except OSError as exc:
    out["unshare -r true"] = exc.errno
print(json.dumps(out))
"""
DENIED = ("keyctl", "add_key", "bpf", "perf_event_open", "userfaultfd", "unshare_user")

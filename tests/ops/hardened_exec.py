"""Run a command under the sandbox pieces of logdetect.service that work without systemd as PID 1.

    python hardened_exec.py ALLOWED_SYSCALLS_FILE -- COMMAND [ARGS...]

Applies, in this order, then `execv`s COMMAND (all three survive exec):
- NoNewPrivileges=yes        -> prctl(PR_SET_NO_NEW_PRIVS)
- MemoryDenyWriteExecute=yes -> prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) (Linux >= 6.3; the
                                kernel-native form of the same W^X rule systemd enforces by seccomp)
- SystemCallFilter=...       -> a libseccomp filter that allows exactly the system calls named in
  + SystemCallErrorNumber=EPERM  ALLOWED_SYSCALLS_FILE (one per line, expanded by the test from
                                `systemd-analyze syscall-filter`) and fails every other with EPERM.

Before exec it proves each piece is active (W+X mmap refused, chroot refused) and exits 3 if not.
Test helper only: uses libseccomp2 through ctypes, no extra dependency.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO_EPERM = 0x00050000 | errno.EPERM


def main(argv: list[str]) -> int:
    """Run a command with only the allowed syscalls (seccomp), as the hardened unit does."""
    allowed_file, sep, *command = argv
    if sep != "--" or not command:
        sys.stderr.write(__doc__ or "")
        return 2
    with open(allowed_file) as handle:
        allowed = [line.strip() for line in handle if line.strip()]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.stderr.write("no_new_privs failed\n")
        return 3
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.stderr.write(f"PR_SET_MDWE failed: {os.strerror(ctypes.get_errno())}\n")
        return 4
    name = ctypes.util.find_library("seccomp")
    if name is None:
        sys.stderr.write("libseccomp not found\n")
        return 4
    seccomp = ctypes.CDLL(name, use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = seccomp.seccomp_init(SCMP_ACT_ERRNO_EPERM)
    for syscall in allowed:
        nr = seccomp.seccomp_syscall_resolve_name(syscall.encode())
        if nr < 0:  # not a system call of this architecture (e.g. the *32 variants)
            continue
        # `execve` must stay allowed for our own exec below; it is in @system-service anyway.
        if seccomp.seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0:
            sys.stderr.write(f"cannot allow {syscall}\n")
            return 4
    if seccomp.seccomp_load(ctx) != 0:
        sys.stderr.write("seccomp_load failed\n")
        return 4
    # Prove the sandbox is on before running anything under it.
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        sys.stderr.write("W+X mapping was allowed: MDWE is not active\n")
        return 3
    except OSError:
        pass
    try:
        os.chroot("/")
        sys.stderr.write("chroot was allowed: the system call filter is not active\n")
        return 3
    except PermissionError:
        pass
    os.execv(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

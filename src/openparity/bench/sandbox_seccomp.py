"""The sandbox's system-call filter (seccomp BPF), built by hand with ctypes. Stdlib only.

Installed by the launcher as the last step before the program starts (after no-new-privileges,
so an unprivileged process may install it), inherited by every process the program starts and
impossible to remove. It refuses with EPERM what a Python answer never needs and what could
reach past the sandbox's namespaces:

- kernel keyrings (keyctl, add_key, request_key): the user nobody's keyring is shared by
  every run, and a caller's session keyring may hold credentials;
- debugging and other processes' memory (ptrace, process_vm_readv / writev);
- new namespaces, mounts and roots (unshare, setns, mount, umount2, pivot_root, the new mount
  API, clone with a CLONE_NEW* flag; clone3 answers ENOSYS so the C library falls back to clone,
  whose flags a filter can read);
- kernel facilities with a history of escapes (bpf, perf_event_open, userfaultfd, io_uring,
  module and kexec loading, open_by_handle_at);
- sockets of the VM's vsock port space and netlink (the network namespace has no other route
  out, but those two are not bound by it).

Any other architecture than the one the filter was built for (an i386 system call from an
x86-64 process) kills the process.
"""

import ctypes
import os
import struct

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
EPERM, ENOSYS = 1, 38
AF_NETLINK, AF_VSOCK = 16, 40
CLONE_NEW_FLAGS = 0x7E020080  # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
X32_SYSCALL_BIT = 0x40000000

# BPF opcodes: load a word of seccomp_data, jump if equal / if any bit set / if >=, return
LD_W_ABS, JEQ_K, JSET_K, JGE_K, RET_K = 0x20, 0x15, 0x45, 0x35, 0x06
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16  # arg0's low 32 bits (little endian)

ARCHES = {
    "x86_64": {
        "audit_arch": 0xC000003E,
        "socket": 41,
        "clone": 56,
        "denied": {
            "ptrace": 101,
            "syslog": 103,
            "acct": 163,
            "mount": 165,
            "umount2": 166,
            "swapon": 167,
            "swapoff": 168,
            "reboot": 169,
            "init_module": 175,
            "delete_module": 176,
            "quotactl": 179,
            "pivot_root": 155,
            "kexec_load": 246,
            "add_key": 248,
            "request_key": 249,
            "keyctl": 250,
            "unshare": 272,
            "perf_event_open": 298,
            "name_to_handle_at": 303,
            "open_by_handle_at": 304,
            "setns": 308,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "finit_module": 313,
            "kexec_file_load": 320,
            "bpf": 321,
            "userfaultfd": 323,
        },
    },
    "aarch64": {
        "audit_arch": 0xC00000B7,
        "socket": 198,
        "clone": 220,
        "denied": {
            "ptrace": 117,
            "syslog": 116,
            "acct": 89,
            "mount": 40,
            "umount2": 39,
            "swapon": 224,
            "swapoff": 225,
            "reboot": 142,
            "init_module": 105,
            "delete_module": 106,
            "quotactl": 60,
            "pivot_root": 41,
            "kexec_load": 104,
            "add_key": 217,
            "request_key": 218,
            "keyctl": 219,
            "unshare": 97,
            "perf_event_open": 241,
            "name_to_handle_at": 264,
            "open_by_handle_at": 265,
            "setns": 268,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "finit_module": 273,
            "kexec_file_load": 294,
            "bpf": 280,
            "userfaultfd": 282,
        },
    },
}
# the same number on every architecture (the unified table from Linux 5.1 on)
COMMON_DENIED = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
}
CLONE3 = 435


def _op(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)


def deny_filter(machine):
    """The BPF program for `machine` (os.uname().machine), as bytes of sock_filter."""
    arch = ARCHES[machine]
    allow, eperm = _op(RET_K, SECCOMP_RET_ALLOW), _op(RET_K, SECCOMP_RET_ERRNO | EPERM)
    program = [
        _op(LD_W_ABS, OFFSET_ARCH),
        _op(JEQ_K, arch["audit_arch"], 1, 0),
        _op(RET_K, SECCOMP_RET_KILL_PROCESS),
        _op(LD_W_ABS, OFFSET_NR),
    ]
    if machine == "x86_64":  # the x32 ABI: the same calls under other numbers
        program += [_op(JGE_K, X32_SYSCALL_BIT, 0, 1), eperm]
    for number in sorted({*arch["denied"].values(), *COMMON_DENIED.values()}):
        program += [_op(JEQ_K, number, 0, 1), eperm]
    program += [_op(JEQ_K, CLONE3, 0, 1), _op(RET_K, SECCOMP_RET_ERRNO | ENOSYS)]
    # socket(domain, ...): vsock and netlink refused
    program += [
        _op(JEQ_K, arch["socket"], 0, 4),
        _op(LD_W_ABS, OFFSET_ARG0),
        _op(JEQ_K, AF_VSOCK, 1, 0),
        _op(JEQ_K, AF_NETLINK, 0, 1),
        eperm,
    ]
    # clone(flags, ...): no new namespace (the accumulator may hold arg0 after the socket
    # check, so the number is loaded again)
    program += [
        _op(LD_W_ABS, OFFSET_NR),
        _op(JEQ_K, arch["clone"], 0, 3),
        _op(LD_W_ABS, OFFSET_ARG0),
        _op(JSET_K, CLONE_NEW_FLAGS, 0, 1),
        eperm,
        allow,
    ]
    return b"".join(program)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(libc):
    """Install the filter on this process (and so on everything it starts). Returns 0 or the
    errno; an architecture without a table is ENOSYS (the caller refuses to run there)."""
    machine = os.uname().machine
    if machine not in ARCHES:
        return ENOSYS
    code = deny_filter(machine)
    buffer = ctypes.create_string_buffer(code, len(code))
    program = _SockFprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) != 0:
        return ctypes.get_errno() or EPERM
    return 0
